from services.publisher.app import create_app
from shared.event_loop import serve

serve(create_app().run())
