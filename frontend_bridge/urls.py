from django.urls import include, re_path

from . import api, frontend, outputs, own_models_page
from . import workspace_api as w

SLUG = r"(?P<slug>[A-Za-z0-9_-]{1,16})"

# ComfyUI registers each API route both bare and under /api; so do we.
API_ROUTES = [
    (r"prompt", api.prompt),
    (r"queue", api.queue),
    (r"history", api.history),
    (r"history/(?P<prompt_id>[^/]+)", api.history),
    (r"view", api.view),
    (r"viewvideo", api.view),
    (r"interrupt", api.interrupt),
    (r"jobs", api.jobs),
    (r"jobs/cancel", api.jobs_cancel),
    (r"jobs/(?P<job_id>[^/]+)", api.job_detail),
    (r"jobs/(?P<job_id>[^/]+)/assets", api.job_assets),
    (r"jobs/(?P<job_id>[^/]+)/cancel", api.job_cancel),
    (r"global_subgraphs", w.global_subgraphs),
    (r"global_subgraphs/(?P<subgraph_id>[^/]+)", w.global_subgraph),
    (r"node_replacements", w.node_replacements),
    (r"workshop/queue", api.workshop_queue),
    (r"workshop/releases", w.releases),
    (r"free", w.free),
    (r"system_stats", w.system_stats),
    (r"features", w.features),
    (r"embeddings", w.embeddings),
    (r"extensions", w.extensions),
    (r"object_info", w.object_info),
    (r"object_info/(?P<node_class>[^/]+)", w.object_info),
    (r"models", w.models),
    (r"models/(?P<folder>[^/]+)", w.models),
    (r"experiment/models", w.experiment_models),
    (r"experiment/models/(?P<folder>[^/]+)", w.experiment_models),
    (r"workflow_templates", w.workflow_templates),
    (r"workflow_templates/(?P<module>[^/]+)/(?P<name>.+)", w.custom_node_template),
    (r"i18n", w.empty_object),
    (r"users", w.users),
    (r"settings", w.settings_all),
    (r"settings/(?P<setting_id>[^/]+)", w.settings_one),
    (r"userdata", w.userdata_list),
    (r"v2/userdata", w.userdata_v2),
    (r"userdata/(?P<file>.+)/move/(?P<dest>.+)", w.userdata_move),
    (r"userdata/(?P<file>.+)", w.userdata_file),
    (r"upload/image", w.upload_image),
    (r"upload/mask", w.upload_mask),
    (r"view_metadata/(?P<folder_name>[^/]+)", w.view_metadata),
]

# Everything of one workspace, under /user/<slug>/; each view gets `slug`.
workspace_patterns = [re_path(rf"^{prefix}{pattern}$", view) for prefix in ("api/", "") for pattern, view in API_ROUTES]
workspace_patterns += [
    re_path(r"^internal/logs(?:/raw|/subscribe)?$", w.internal_logs),
    re_path(r"^internal/files/(?P<folder_type>[a-z]+)$", w.internal_files),
    re_path(r"^internal/folder_paths$", w.internal_folder_paths),
    re_path(r"^outputs/$", outputs.outputs_page),
    re_path(r"^outputs\.zip$", outputs.outputs_zip),
    re_path(r"^my-models/$", own_models_page.models_page),
    re_path(r"^my-models/list$", own_models_page.models_list),
    re_path(r"^my-models/upload$", own_models_page.model_upload),
    re_path(r"^my-models/fetch$", own_models_page.model_fetch),
    re_path(r"^my-models/(?P<pk>[0-9]+)/delete$", own_models_page.model_delete),
    re_path(r"^$", frontend.page),
    re_path(
        r"^(?P<path>(assets|scripts|extensions|fonts|cursor|templates|docs)/.+|[^/]+\.(css|json|js|ico|png|svg))$",
        frontend.asset,
    ),
]

urlpatterns = [
    re_path(r"^assets/(?P<path>.+)$", frontend.root_asset),
    re_path(r"^favicon\.ico$", frontend.root_asset, {"path": "favicon.ico"}),
    re_path(rf"^user/{SLUG}$", frontend.without_slash),
    re_path(rf"^user/{SLUG}/", include(workspace_patterns)),
]
