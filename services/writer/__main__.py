import asyncio

from services.writer.app import create_app

asyncio.run(create_app().run())
