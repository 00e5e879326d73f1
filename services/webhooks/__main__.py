import asyncio

from services.webhooks.app import create_app

asyncio.run(create_app().run())
