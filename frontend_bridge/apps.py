from django.apps import AppConfig


class FrontendBridgeConfig(AppConfig):
    name = "frontend_bridge"
    verbose_name = "ComfyUI gateway"

    def ready(self):
        # Settings and apps are loaded only now (Django's place for this).
        from django.conf import settings
        from PIL import Image

        # Whatever decodes an image in this process refuses one past the workshop's limit.
        Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS
