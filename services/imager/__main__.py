import asyncio

from services.imager.app import create_app

asyncio.run(create_app().run())
