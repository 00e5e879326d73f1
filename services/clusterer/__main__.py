import asyncio

from services.clusterer.app import create_app

asyncio.run(create_app().run())
