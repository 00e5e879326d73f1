import asyncio

from services.ideator.app import create_app

asyncio.run(create_app().run())
