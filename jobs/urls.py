from django.urls import path

from . import worker_api

urlpatterns = [
    path("auth", worker_api.auth),
    path("register", worker_api.register),
    path("heartbeat", worker_api.heartbeat),
    path("catalog", worker_api.catalog),
    path("catalog/files", worker_api.catalog_file),
    path("jobs/<uuid:job_id>/inputs", worker_api.job_input),
    path("jobs/<uuid:job_id>/models/<str:sha256>", worker_api.job_model),
    path("jobs/<uuid:job_id>/started", worker_api.job_started),
    path("jobs/<uuid:job_id>/events", worker_api.job_events),
    path("jobs/<uuid:job_id>/outputs", worker_api.job_output),
    path("jobs/<uuid:job_id>/finish", worker_api.job_finish),
]
