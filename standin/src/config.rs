//! Start-up configuration (§9.2): every flag has an environment variable; flags win.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::catalogue::Catalogue;
use crate::failure::{FailureMode, parse_mode_list};
use crate::gpu::OverCapacity;

/// Help text printed by `--help`.
pub const USAGE: &str = "\
ml-standin: ML server stand-in with SIMULATED results (development and test tool, not a detector)

Usage: ml-standin [--flag value | --flag=value]...

  --listen <addr>             STANDIN_LISTEN                address (default 0.0.0.0:8000)
  --api-key <key>             API_KEY                       expected X-API-Key (required)
  --catalogue <file>          STANDIN_CATALOGUE             JSON or TOML model catalogue (default built-in)
  --redis-url <url>           REDIS_URL                     progress events target (default: no events)
  --channel <name>            MEDIA_PROGRESS_CHANNEL_NAME   default media-progress-events
  --latency-scale <x>         STANDIN_LATENCY_SCALE         multiplies model latencies (default 1.0; 0 = instant)
  --fail-rate <p>             STANDIN_FAIL_RATE             probability a call fails (default 0.0)
  --fail-modes <list>         STANDIN_FAIL_MODES            modes drawn for random failures (default 500)
  --seed <n>                  STANDIN_SEED                  seed of the random-failure generator (default 0)
  --strict-extensions <bool>  STANDIN_STRICT_EXTENSIONS     only always-known extensions (default true)
  --capacity <n>              STANDIN_CAPACITY              concurrent inferences of the simulated GPU (default unlimited)
  --over-capacity <how>       STANDIN_OVER_CAPACITY         queue (wait for a slot) or fail (500 out of memory); default queue
  --full-heatmaps <bool>      STANDIN_FULL_HEATMAPS         image-heatmap results at full image resolution (default false)
  --per-frame-predictions <bool>
                              STANDIN_PER_FRAME_PREDICTIONS video frame_predictions for all 300 frames (default false)
";

/// Flags and their environment variables, in `--help` order.
const FLAGS: [(&str, &str); 14] = [
    ("listen", "STANDIN_LISTEN"),
    ("api-key", "API_KEY"),
    ("catalogue", "STANDIN_CATALOGUE"),
    ("redis-url", "REDIS_URL"),
    ("channel", "MEDIA_PROGRESS_CHANNEL_NAME"),
    ("latency-scale", "STANDIN_LATENCY_SCALE"),
    ("fail-rate", "STANDIN_FAIL_RATE"),
    ("fail-modes", "STANDIN_FAIL_MODES"),
    ("seed", "STANDIN_SEED"),
    ("strict-extensions", "STANDIN_STRICT_EXTENSIONS"),
    ("capacity", "STANDIN_CAPACITY"),
    ("over-capacity", "STANDIN_OVER_CAPACITY"),
    ("full-heatmaps", "STANDIN_FULL_HEATMAPS"),
    ("per-frame-predictions", "STANDIN_PER_FRAME_PREDICTIONS"),
];

/// Boolean flags: given bare, they mean `true`.
const BOOL_FLAGS: [&str; 3] = ["strict-extensions", "full-heatmaps", "per-frame-predictions"];

/// The stand-in's settings, parsed into real types.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub api_key: String,
    pub catalogue: Catalogue,
    /// Where the catalogue came from (`built-in` or a path), for `/config` and logs.
    pub catalogue_source: String,
    pub redis_url: Option<String>,
    pub channel: String,
    pub latency_scale: f64,
    pub fail_rate: f64,
    pub fail_modes: Vec<FailureMode>,
    pub seed: u64,
    pub strict_extensions: bool,
    /// Concurrent inferences of the simulated GPU; `None` = unlimited.
    pub capacity: Option<usize>,
    /// What a call beyond the capacity does.
    pub over_capacity: OverCapacity,
    /// `image-heatmap` results carry a height × width heatmap for every model, not only for
    /// catalogue entries with `full_heatmap`.
    pub full_heatmaps: bool,
    /// Video results list a prediction for every frame, not one per unit (window, sequence…).
    pub per_frame_predictions: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// A configuration error; its message names the flag and variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults of §9.2 with the given API key (handy for tests).
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            api_key: api_key.into(),
            catalogue: Catalogue::builtin(),
            catalogue_source: "built-in".into(),
            redis_url: None,
            channel: "media-progress-events".into(),
            latency_scale: 1.0,
            fail_rate: 0.0,
            fail_modes: vec![FailureMode::Internal],
            seed: 0,
            strict_extensions: true,
            capacity: None,
            over_capacity: OverCapacity::Queue,
            full_heatmaps: false,
            per_frame_predictions: false,
        }
    }

    /// Parses flags (`args`, without the program name) with `env` as fallback.
    pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = String>,
        E: Fn(&str) -> Option<String>,
    {
        let mut given: HashMap<&'static str, String> = HashMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Ok(Command::Help);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ConfigError(format!("unexpected argument '{arg}' (see --help)")));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let Some((flag, _)) = FLAGS.iter().find(|(f, _)| *f == name) else {
                return Err(ConfigError(format!("unknown flag '--{name}' (see --help)")));
            };
            let value = match inline {
                Some(v) => v,
                // A bare boolean flag means true.
                None if BOOL_FLAGS.contains(flag) && args.peek().is_none_or(|next| next.starts_with("--")) => {
                    "true".into()
                }
                None => args.next().ok_or_else(|| ConfigError(format!("flag '--{flag}' needs a value")))?,
            };
            given.insert(flag, value);
        }
        let lookup = |flag: &str| -> Option<(String, String)> {
            let (_, var) = FLAGS.iter().find(|(f, _)| *f == flag)?;
            let source = format!("--{flag} / {var}");
            given.get(flag).cloned().or_else(|| env(var).filter(|v| !v.trim().is_empty())).map(|v| (v, source))
        };
        let parsed = |flag: &str, what: &str, ok: &dyn Fn(&str) -> bool| -> Result<Option<String>, ConfigError> {
            match lookup(flag) {
                None => Ok(None),
                Some((v, _)) if ok(v.trim()) => Ok(Some(v.trim().to_owned())),
                Some((v, source)) => Err(ConfigError(format!("invalid {source} '{v}': expected {what}"))),
            }
        };

        let mut config = Config::new(String::new());
        match lookup("api-key") {
            Some((key, _)) if !key.is_empty() => config.api_key = key,
            _ => {
                return Err(ConfigError("missing API key: pass --api-key <key> or set API_KEY".into()));
            }
        }
        if let Some((v, source)) = lookup("listen") {
            config.listen = v.trim().parse().map_err(|_| {
                ConfigError(format!("invalid {source} '{v}': expected an address such as 127.0.0.1:8000"))
            })?;
        }
        if let Some((path, source)) = lookup("catalogue") {
            config.catalogue = Catalogue::load(Path::new(&path))
                .map_err(|e| ConfigError(format!("invalid {source} '{path}': {e}")))?;
            config.catalogue_source = path;
        }
        if let Some((url, source)) = lookup("redis-url") {
            redis::Client::open(url.as_str()).map_err(|e| ConfigError(format!("invalid {source} '{url}': {e}")))?;
            config.redis_url = Some(url);
        }
        if let Some((channel, _)) = lookup("channel") {
            config.channel = channel;
        }
        let non_negative = |v: &str| v.parse::<f64>().is_ok_and(|x| x.is_finite() && x >= 0.0);
        if let Some(v) = parsed("latency-scale", "a number >= 0", &non_negative)? {
            config.latency_scale = v.parse().unwrap_or(1.0);
        }
        let probability = |v: &str| v.parse::<f64>().is_ok_and(|x| (0.0..=1.0).contains(&x));
        if let Some(v) = parsed("fail-rate", "a probability within 0–1", &probability)? {
            config.fail_rate = v.parse().unwrap_or(0.0);
        }
        if let Some((v, source)) = lookup("fail-modes") {
            config.fail_modes = parse_mode_list(&v).map_err(|e| ConfigError(format!("invalid {source} '{v}': {e}")))?;
        }
        if let Some(v) = parsed("seed", "an unsigned integer", &|v| v.parse::<u64>().is_ok())? {
            config.seed = v.parse().unwrap_or(0);
        }
        if let Some(v) = parsed("strict-extensions", "true or false", &|v| parse_bool(v).is_some())? {
            config.strict_extensions = parse_bool(&v).unwrap_or(true);
        }
        let positive = |v: &str| v.parse::<usize>().is_ok_and(|n| n > 0);
        if let Some(v) = parsed("capacity", "a whole number >= 1", &positive)? {
            config.capacity = v.parse().ok();
        }
        if let Some((v, source)) = lookup("over-capacity") {
            config.over_capacity = v.parse().map_err(|e| ConfigError(format!("invalid {source} '{v}': {e}")))?;
        }
        if let Some(v) = parsed("full-heatmaps", "true or false", &|v| parse_bool(v).is_some())? {
            config.full_heatmaps = parse_bool(&v).unwrap_or(false);
        }
        if let Some(v) = parsed("per-frame-predictions", "true or false", &|v| parse_bool(v).is_some())? {
            config.per_frame_predictions = parse_bool(&v).unwrap_or(false);
        }
        Ok(Command::Run(Box::new(config)))
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::parse(args.iter().map(|a| a.to_string()), |k| env.get(k).cloned())
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env).expect("valid configuration") {
            Command::Run(c) => *c,
            Command::Help => panic!("expected a configuration"),
        }
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_given() {
        let c = run(&[], &[("API_KEY", "k")]);
        assert_eq!(c.api_key, "k");
        assert_eq!(c.listen, "0.0.0.0:8000".parse().expect("addr"));
        assert_eq!(c.channel, "media-progress-events");
        assert_eq!(c.latency_scale, 1.0);
        assert_eq!(c.fail_modes, vec![FailureMode::Internal]);
        assert!(c.strict_extensions);
        assert!(c.redis_url.is_none());
        assert_eq!(c.capacity, None);
        assert_eq!(c.over_capacity, OverCapacity::Queue);
        assert!(!c.full_heatmaps);
    }

    #[test]
    fn gpu_capacity_and_heatmap_flags_parse_from_flags_and_environment() {
        let c = run(
            &["--api-key", "k", "--capacity", "2", "--full-heatmaps"],
            &[("STANDIN_OVER_CAPACITY", "fail"), ("STANDIN_CAPACITY", "9")],
        );
        assert_eq!(c.capacity, Some(2));
        assert_eq!(c.over_capacity, OverCapacity::Fail);
        assert!(c.full_heatmaps);
        let c = run(&["--full-heatmaps", "--capacity=1"], &[("API_KEY", "k"), ("STANDIN_FULL_HEATMAPS", "false")]);
        assert!(c.full_heatmaps);
        assert_eq!(c.capacity, Some(1));
        let c = run(&[], &[("API_KEY", "k"), ("STANDIN_FULL_HEATMAPS", "true"), ("STANDIN_CAPACITY", " ")]);
        assert!(c.full_heatmaps);
        assert_eq!(c.capacity, None);
        assert!(!c.per_frame_predictions);
        let c = run(&["--per-frame-predictions", "--api-key", "k"], &[]);
        assert!(c.per_frame_predictions);
        let c = run(&[], &[("API_KEY", "k"), ("STANDIN_PER_FRAME_PREDICTIONS", "yes")]);
        assert!(c.per_frame_predictions);
    }

    #[test]
    fn flags_win_over_environment_variables() {
        let c = run(
            &["--api-key=flag", "--latency-scale", "0", "--fail-modes", "429,hang", "--strict-extensions"],
            &[
                ("API_KEY", "env"),
                ("STANDIN_LATENCY_SCALE", "2"),
                ("STANDIN_SEED", "7"),
                ("STANDIN_STRICT_EXTENSIONS", "false"),
            ],
        );
        assert_eq!(c.api_key, "flag");
        assert_eq!(c.latency_scale, 0.0);
        assert_eq!(c.seed, 7);
        assert_eq!(c.fail_modes, vec![FailureMode::RateLimited, FailureMode::Hang]);
        assert!(c.strict_extensions);
        let c = run(&["--strict-extensions", "false", "--api-key", "k"], &[]);
        assert!(!c.strict_extensions);
    }

    #[test]
    fn missing_key_and_bad_values_are_reported_with_their_names() {
        let err = parse(&[], &[]).expect_err("no key").to_string();
        assert!(err.contains("API_KEY"), "{err}");
        for (args, needle) in [
            (vec!["--api-key", "k", "--fail-rate", "2"], "STANDIN_FAIL_RATE"),
            (vec!["--api-key", "k", "--latency-scale", "-1"], "STANDIN_LATENCY_SCALE"),
            (vec!["--api-key", "k", "--fail-modes", "flaky-2"], "STANDIN_FAIL_MODES"),
            (vec!["--api-key", "k", "--listen", "nowhere"], "STANDIN_LISTEN"),
            (vec!["--api-key", "k", "--catalogue", "/nonexistent.json"], "STANDIN_CATALOGUE"),
            (vec!["--api-key", "k", "--bogus", "1"], "--bogus"),
            (vec!["--api-key", "k", "--capacity", "0"], "STANDIN_CAPACITY"),
            (vec!["--api-key", "k", "--capacity", "two"], "STANDIN_CAPACITY"),
            (vec!["--api-key", "k", "--over-capacity", "drop"], "STANDIN_OVER_CAPACITY"),
            (vec!["--api-key", "k", "--full-heatmaps", "maybe"], "STANDIN_FULL_HEATMAPS"),
        ] {
            let err = parse(&args, &[]).expect_err("invalid").to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(matches!(parse(&["--help"], &[]), Ok(Command::Help)));
    }
}
