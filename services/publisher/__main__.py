import asyncio

from services.publisher.app import create_app

asyncio.run(create_app().run())
