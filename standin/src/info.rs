//! Discovery and status endpoints: `/`, `/ping`, `/stats`, `/models`, `/device`, `/system`,
//! `/config` (§2, §3).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::catalogue::ModelEntry;
use crate::state::AppState;

/// `service_name` of `/stats` (§9.1).
pub const SERVICE_NAME: &str = "Drishtiksha ML stand-in (simulated results)";

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn model_info(state: &AppState, m: &ModelEntry) -> Value {
    json!({
        "name": m.name,
        "class_name": m.class_name,
        "description": m.description,
        "loaded": m.loaded,
        "device": "cpu",
        "model_path": format!("simulated://{}", m.name),
        "isAudio": m.is_audio,
        "isVideo": m.is_video,
        "isImage": m.is_image,
        "isMultiModal": m.is_multimodal,
        "memory_usage_mb": null,
        "load_time": null,
        "inference_count": state.inference_count(&m.name),
    })
}

fn device_info() -> Value {
    json!({
        "type": "cpu",
        "name": "ML stand-in (no inference)",
        "total_memory": null,
        "used_memory": null,
        "free_memory": null,
        "memory_usage_percent": null,
        "compute_capability": null,
        "cuda_version": null,
    })
}

fn system_info(state: &AppState) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    json!({
        "python_version": "n/a (ML stand-in)",
        "platform": format!("{}-{} (ML stand-in)", std::env::consts::OS, std::env::consts::ARCH),
        "cpu_count": cpus,
        "total_ram": 16.0,
        "used_ram": 1.0,
        "ram_usage_percent": 6.25,
        "uptime_seconds": round2(state.uptime()),
    })
}

fn configuration(state: &AppState) -> Value {
    let c = &state.config;
    let catalogue = state.catalogue();
    json!({
        "default_model": catalogue.default_model(),
        "models": catalogue.models().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        "simulated": true,
        "catalogue": c.catalogue_source,
        "latency_scale": c.latency_scale,
        "fail_rate": c.fail_rate,
        "fail_modes": c.fail_modes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "seed": c.seed,
        "strict_extensions": c.strict_extensions,
        "capacity": c.capacity,
        "over_capacity": c.over_capacity,
        "full_heatmaps": c.full_heatmaps,
        "per_frame_predictions": c.per_frame_predictions,
        "progress_events": state.publisher.enabled(),
        "progress_channel": c.channel,
    })
}

/// `GET /`.
pub async fn get_root(State(state): State<Arc<AppState>>) -> Json<Value> {
    let catalogue = state.catalogue();
    let models: Vec<Value> = catalogue
        .models()
        .iter()
        .map(|m| json!({"name": m.name, "loaded": m.loaded, "description": m.description}))
        .collect();
    Json(json!({
        "status": "ok",
        "active_models": models,
        "default_model": catalogue.default_model(),
    }))
}

/// `GET /ping`.
pub async fn get_ping() -> Json<Value> {
    Json(json!({"status": "pong"}))
}

/// `GET /stats`: the backend's model discovery.
pub async fn get_stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    let catalogue = state.catalogue();
    let models: Vec<Value> = catalogue.models().iter().map(|m| model_info(&state, m)).collect();
    let loaded = catalogue.models().iter().filter(|m| m.loaded).count();
    let uptime = round2(state.uptime());
    Json(json!({
        "service_name": SERVICE_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "status": "running",
        "uptime_seconds": uptime,
        "device_info": device_info(),
        "system_info": system_info(&state),
        "models_info": models,
        "active_models_count": loaded,
        "total_models_count": catalogue.models().len(),
        "configuration": configuration(&state),
    }))
}

/// `GET /models`.
pub async fn get_models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let catalogue = state.catalogue();
    let all = catalogue.models();
    let names = |only_loaded: bool| -> Vec<&str> {
        all.iter().filter(|m| !only_loaded || m.loaded).map(|m| m.name.as_str()).collect()
    };
    Json(json!({
        "models": all.iter().map(|m| model_info(&state, m)).collect::<Vec<_>>(),
        "summary": {
            "total_configured": all.len(),
            "currently_loaded": names(true).len(),
            "active_models": names(false),
            "loaded_models": names(true),
        },
    }))
}

/// `GET /device`.
pub async fn get_device() -> Json<Value> {
    Json(device_info())
}

/// `GET /system`.
pub async fn get_system(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(system_info(&state))
}

/// `GET /config`.
pub async fn get_config(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(configuration(&state))
}
