import asyncio

from services.rules.app import create_app

asyncio.run(create_app().run())
