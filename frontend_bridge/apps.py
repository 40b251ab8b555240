from django.apps import AppConfig


class FrontendBridgeConfig(AppConfig):
    name = "frontend_bridge"
    verbose_name = "ComfyUI gateway"
