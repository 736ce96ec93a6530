//! One function per subcommand. Each returns the exit status, or a [`CliError`] (exit status 2).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use comfy_table::Cell;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use url::Url;

use crate::client::{Api, CliError, Result};
use crate::config::{self, Credentials};
use crate::model::{Login, Media, ResultJson, Run, User, fully_analysed, is_terminal, verdict};
use crate::output::{Ui, colored, percent, results_table};
use crate::track::{self, Target, Tracker};
use crate::{Cli, Command};

/// Uploads at least this large get a byte progress bar.
const UPLOAD_BAR_MIN: u64 = 1 << 20;

struct Ctx {
    server: Url,
    token: Option<String>,
    ui: Ui,
    json: bool,
    no_socket: bool,
}

impl Ctx {
    fn anonymous(&self) -> Result<Api> {
        Api::new(self.server.clone(), None)
    }

    fn authed(&self) -> Result<Api> {
        match &self.token {
            Some(t) => Api::new(self.server.clone(), Some(t.clone())),
            None => Err(CliError::usage(
                format!("not logged in to {}", self.server),
                "run `drishtiksha login`, or set DRISHTIKSHA_TOKEN",
            )),
        }
    }
}

pub async fn run(cli: Cli, ui: Ui) -> Result<u8> {
    let saved = config::load();
    let server = match (&cli.server, &saved) {
        (Some(s), _) => config::parse_server(s)?,
        (None, Some(c)) => config::parse_server(&c.server)?,
        (None, None) => config::parse_server(config::DEFAULT_SERVER)?,
    };
    // A saved token is only sent to the server it came from.
    let token = std::env::var("DRISHTIKSHA_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| saved.filter(|c| config::same_server(&c.server, &server)).map(|c| c.token));
    let ctx = Ctx { server, token, ui, json: cli.json, no_socket: cli.no_socket };
    match cli.command {
        Command::Login { email, password_stdin } => login(&ctx, email, password_stdin).await,
        Command::Signup { email, first_name, last_name, password_stdin } => {
            signup(&ctx, [email, first_name, last_name], password_stdin).await
        }
        Command::Logout => logout(&ctx).await,
        Command::Whoami => whoami(&ctx).await,
        Command::Analyze { paths, recursive, detach, description } => {
            analyze(&ctx, &paths, recursive, detach, description.as_deref()).await
        }
        Command::Watch { ids } => watch(&ctx, &ids).await,
        Command::List => list(&ctx).await,
        Command::Show { id } => show(&ctx, &id).await,
        Command::Rerun { id, detach } => rerun(&ctx, &id, detach).await,
        Command::Cancel { id } => cancel(&ctx, &id).await,
        Command::Delete { id, yes } => delete(&ctx, &id, yes).await,
        Command::Report { id, output } => report(&ctx, &id, output).await,
        Command::Models => models(&ctx).await,
        Command::Status => status(&ctx).await,
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn media_id(id: &str) -> Result<&str> {
    let ok = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if ok {
        Ok(id)
    } else {
        Err(CliError::usage(format!("{id:?} is not a media id"), "`drishtiksha list` shows your media and their ids"))
    }
}

/// A visible answer: the flag's value, else a prompt on the terminal.
fn ask(value: Option<String>, prompt: &str, flag: &str) -> Result<String> {
    if let Some(v) = value {
        return Ok(v.trim().to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!("no {}", prompt.to_lowercase()), format!("pass {flag}")));
    }
    eprint!("{prompt}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(line.trim().to_string())
}

/// A hidden answer: stdin's first line with --password-stdin, else a prompt that does not echo.
fn password(password_stdin: bool, confirm: bool) -> Result<String> {
    if password_stdin {
        return Ok(std::io::stdin().lock().lines().next().and_then(|l| l.ok()).unwrap_or_default());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage("no terminal to ask for the password", "pipe it with --password-stdin"));
    }
    let read = |p: &str| {
        rpassword::prompt_password(p)
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}"), "use --password-stdin"))
    };
    let pw = read("Password: ")?;
    if confirm && read("Password again: ")? != pw {
        return Err(CliError::usage("the passwords differ", "type the same password twice"));
    }
    Ok(pw)
}

async fn signup(ctx: &Ctx, [email, first, last]: [Option<String>; 3], password_stdin: bool) -> Result<u8> {
    let email = ask(email, "E-mail", "--email")?;
    let first = ask(first, "First name", "--first-name")?;
    let last = ask(last, "Last name", "--last-name")?;
    let pw = password(password_stdin, true)?;
    let body = json!({ "email": email, "password": pw, "firstName": first, "lastName": last });
    let created: Login = ctx.anonymous()?.post("/api/v1/auth/signup", Some(body)).await?;
    save_login(ctx, created, "Signed up and logged in")
}

async fn login(ctx: &Ctx, email: Option<String>, password_stdin: bool) -> Result<u8> {
    let email = if password_stdin && email.is_none() {
        return Err(CliError::usage("no e-mail given", "pass --email with --password-stdin"));
    } else {
        ask(email, "E-mail", "--email")?
    };
    let password = password(password_stdin, false)?;
    if email.is_empty() || password.is_empty() {
        return Err(CliError::usage("e-mail and password are required", "drishtiksha login --email you@example.org"));
    }
    let api = ctx.anonymous()?;
    let login: Login = api
        .post("/api/v1/auth/login", Some(json!({ "email": email, "password": password })))
        .await
        .map_err(|e| if e.status == Some(401) { e.with_hint("check the e-mail and password") } else { e })?;
    save_login(ctx, login, "Logged in")
}

fn save_login(ctx: &Ctx, login: Login, what: &str) -> Result<u8> {
    let path = config::save(&Credentials {
        server: ctx.server.as_str().trim_end_matches('/').to_string(),
        email: login.user.email.clone(),
        token: login.token,
    })?;
    if ctx.json {
        print_json(&json!({ "server": ctx.server.as_str(), "email": login.user.email, "role": login.user.role }));
    } else {
        ctx.ui.note(format!(
            "{what} to {} as {} ({} {}). Token saved in {}.",
            ctx.server,
            login.user.email,
            login.user.first_name,
            login.user.last_name,
            path.display()
        ));
    }
    Ok(0)
}

async fn logout(ctx: &Ctx) -> Result<u8> {
    if let Some(token) = &ctx.token {
        let api = Api::new(ctx.server.clone(), Some(token.clone()))?;
        if let Err(e) = api.post::<Value>("/api/v1/auth/logout", None).await {
            ctx.ui.note(format!("The server did not revoke the token ({e}); forgetting it here anyway."));
        }
    }
    let had = config::remove();
    ctx.ui.note(if had || ctx.token.is_some() {
        format!("Logged out of {}.", ctx.server)
    } else {
        "Not logged in.".to_string()
    });
    Ok(0)
}

async fn whoami(ctx: &Ctx) -> Result<u8> {
    let user: User = ctx.authed()?.get("/api/v1/auth/profile").await?;
    if ctx.json {
        print_json(&json!({ "server": ctx.server.as_str(), "id": user.id, "email": user.email,
            "firstName": user.first_name, "lastName": user.last_name, "role": user.role }));
    } else {
        println!("{} ({} {}, {}) on {}", user.email, user.first_name, user.last_name, user.role, ctx.server);
    }
    Ok(0)
}

/// Exit status of a finished batch: 0 every run fully analysed, 1 otherwise.
fn batch_status(results: &[(Media, Option<Run>)]) -> u8 {
    if results.iter().all(|(_, r)| r.as_ref().is_some_and(fully_analysed)) { 0 } else { 1 }
}

/// Results on stdout; `rejected` are uploads the server refused (`{file, error}`).
fn print_results(ctx: &Ctx, results: &[(Media, Option<Run>)], rejected: &[Value]) {
    if ctx.json {
        let out: Vec<ResultJson> = results.iter().map(|(m, r)| ResultJson::new(m, r.as_ref())).collect();
        print_json(&json!({ "server": ctx.server.as_str(), "results": out, "rejected": rejected }));
    } else if !results.is_empty() {
        println!("{}", results_table(&ctx.ui, results));
    }
}

/// Follows `targets` to the end and prints the results; the exit status.
async fn follow(
    ctx: &Ctx,
    api: &Api,
    targets: Vec<Target>,
    socket: Option<tokio::sync::mpsc::UnboundedReceiver<crate::socket::Event>>,
    multi: indicatif::MultiProgress,
    rejected: &[Value],
) -> Result<u8> {
    let mut tracker = Tracker::new(api, &ctx.ui, multi);
    for t in targets {
        tracker.add(t);
    }
    let outcome = tracker.run(socket).await?;
    print_results(ctx, &outcome.results, rejected);
    if outcome.interrupted {
        return Ok(130);
    }
    Ok(batch_status(&outcome.results))
}

async fn analyze(
    ctx: &Ctx,
    paths: &[std::path::PathBuf],
    recursive: bool,
    detach: bool,
    description: Option<&str>,
) -> Result<u8> {
    let (files, skipped) = crate::files::collect(paths, recursive)?;
    let api = ctx.authed()?;
    // Authenticate before uploading anything, so a bad token costs no upload.
    let _: User = api.get("/api/v1/auth/profile").await?;
    if skipped > 0 {
        ctx.ui
            .note(format!("Skipping {skipped} file(s) of unsupported types (supported: {}).", crate::files::SUPPORTED));
    }
    // The socket is opened before the uploads so that no event of theirs is missed.
    let socket = if detach { None } else { track::open_socket(&api, &ctx.ui, ctx.no_socket).await };
    let multi = track::progress_area(&ctx.ui);
    let mut targets = Vec::new();
    let mut uploaded = Vec::new();
    let mut refused = Vec::new();
    for (path, mime) in &files {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = if ctx.ui.bars && size >= UPLOAD_BAR_MIN {
            let b = multi.add(ProgressBar::new(size));
            b.set_style(
                ProgressStyle::with_template(
                    "  uploading {prefix} [{bar:30.green/white}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(path.display().to_string());
            b
        } else {
            ProgressBar::hidden()
        };
        let counter = bar.clone();
        let res = api.upload(path, mime, description, move |n| counter.inc(n)).await;
        bar.finish_and_clear();
        match res {
            Ok(media) => {
                let m: Media = serde_json::from_value(media).map_err(|e| {
                    CliError::usage(format!("the server's answer was not understood: {e}"), "check --server")
                })?;
                if !ctx.ui.bars {
                    ctx.ui.note(format!("{}: uploaded as {}", m.filename, m.id));
                }
                targets.push(Target {
                    media_id: m.id.clone(),
                    filename: m.filename.clone(),
                    run_id: m.latest_analysis_run_id.clone(),
                });
                uploaded.push(m);
            }
            // The server refused this file: say why and go on with the others.
            Err(e) if e.status.is_some_and(|s| s != 401) => {
                refused.push(json!({ "file": path.display().to_string(), "error": e.message }));
                let _ = multi.println(format!("{}: {e}", path.display()));
                if !ctx.ui.bars {
                    eprintln!("{}: {e}", path.display());
                }
            }
            Err(e) => return Err(e),
        }
    }
    if detach {
        if ctx.json {
            let out: Vec<Value> = uploaded
                .iter()
                .map(|m| json!({ "mediaId": m.id, "filename": m.filename, "runId": m.latest_analysis_run_id, "status": m.status }))
                .collect();
            print_json(&json!({ "server": ctx.server.as_str(), "uploads": out, "rejected": refused }));
        } else {
            let mut t = ctx.ui.table();
            t.set_header(["File", "Media id", "Status"]);
            for m in &uploaded {
                t.add_row(vec![Cell::new(&m.filename), Cell::new(&m.id), colored(&m.status)]);
            }
            println!("{t}");
            ctx.ui.note("Analyses continue on the server; `drishtiksha watch` follows them.");
        }
        return Ok(if refused.is_empty() { 0 } else { 2 });
    }
    if targets.is_empty() {
        return Err(CliError::usage("no file was accepted by the server", "see the reasons above"));
    }
    let code = follow(ctx, &api, targets, socket, multi, &refused).await?;
    Ok(if !refused.is_empty() && code != 130 { 2 } else { code })
}

async fn watch(ctx: &Ctx, ids: &[String]) -> Result<u8> {
    let api = ctx.authed()?;
    let socket_task = {
        let (api, ui, off) = (api.clone(), ctx.ui, ctx.no_socket);
        tokio::spawn(async move { track::open_socket(&api, &ui, off).await })
    };
    let mut targets = Vec::new();
    if ids.is_empty() {
        let all: Vec<Media> = api.get("/api/v1/media").await?;
        for m in all.into_iter().filter(|m| !is_terminal(&m.status)) {
            targets.push(Target { media_id: m.id, filename: m.filename, run_id: m.latest_analysis_run_id });
        }
    } else {
        for id in ids {
            let m: Media = api.get(&format!("/api/v1/media/{}", media_id(id)?)).await?;
            targets.push(Target { media_id: m.id, filename: m.filename, run_id: m.latest_analysis_run_id });
        }
    }
    if targets.is_empty() {
        socket_task.abort();
        if ctx.json {
            print_json(&json!({ "server": ctx.server.as_str(), "results": [] }));
        } else {
            ctx.ui.note("Nothing to watch: none of your analyses is running.");
        }
        return Ok(0);
    }
    let socket = socket_task.await.ok().flatten();
    follow(ctx, &api, targets, socket, track::progress_area(&ctx.ui), &[]).await
}

async fn list(ctx: &Ctx) -> Result<u8> {
    let all: Vec<Media> = ctx.authed()?.get("/api/v1/media").await?;
    if ctx.json {
        let out: Vec<ResultJson> = all.iter().map(|m| ResultJson::new(m, m.run(None))).collect();
        print_json(&json!({ "server": ctx.server.as_str(), "results": out }));
        return Ok(0);
    }
    if all.is_empty() {
        ctx.ui.note("No media yet: `drishtiksha analyze FILE` uploads one.");
        return Ok(0);
    }
    let mut t = ctx.ui.table();
    t.set_header(["Media id", "File", "Type", "Status", "Verdict", "Models", "Uploaded"]);
    for m in &all {
        let run = m.run(None);
        let models = run.map(|r| format!("{}/{}", r.completed_count, r.total_models)).unwrap_or_default();
        t.add_row(vec![
            Cell::new(&m.id),
            Cell::new(&m.filename),
            Cell::new(&m.media_type),
            colored(&m.status),
            if m.status == "ANALYZED" { colored(run.map_or("", verdict)) } else { Cell::new("") },
            Cell::new(models),
            Cell::new(m.created_at.get(..16).unwrap_or(&m.created_at).replace('T', " ")),
        ]);
    }
    println!("{t}");
    Ok(0)
}

async fn show(ctx: &Ctx, id: &str) -> Result<u8> {
    let api = ctx.authed()?;
    let raw: Value = api.get(&format!("/api/v1/media/{}", media_id(id)?)).await?;
    if ctx.json {
        print_json(&raw);
        return Ok(0);
    }
    let m: Media = serde_json::from_value(raw)
        .map_err(|e| CliError::usage(format!("the server's answer was not understood: {e}"), "check --server"))?;
    println!("{} ({}, {} bytes)  id {}", m.filename, m.media_type, m.size, m.id);
    println!("status {}  uploaded {}", m.status, m.created_at);
    for r in &m.analysis_runs {
        println!();
        println!(
            "Run #{} {}  {}  verdict {}  {}/{} models completed, {} failed  id {}",
            r.run_number,
            r.status,
            r.created_at,
            verdict(r),
            r.completed_count,
            r.total_models,
            r.failed_count,
            r.id
        );
        if let Some(e) = &r.error_message {
            println!("  {e}");
        }
        if r.analyses.is_empty() {
            continue;
        }
        let mut t = ctx.ui.table();
        t.set_header(["Model", "Status", "Prediction", "Confidence", "Time", "Model used", "Error"]);
        for a in &r.analyses {
            let done = a.status == "COMPLETED";
            t.add_row(vec![
                Cell::new(&a.model_name),
                colored(&a.status),
                if done { colored(&a.prediction) } else { Cell::new("") },
                Cell::new(if done { percent(a.confidence) } else { String::new() }),
                Cell::new(a.processing_time.map(|t| format!("{t:.1} s")).unwrap_or_default()),
                Cell::new(a.model_used().unwrap_or_default()),
                Cell::new(a.error_message.clone().unwrap_or_default()),
            ]);
        }
        println!("{t}");
    }
    Ok(0)
}

async fn rerun(ctx: &Ctx, id: &str, detach: bool) -> Result<u8> {
    let api = ctx.authed()?;
    let socket = if detach { None } else { track::open_socket(&api, &ctx.ui, ctx.no_socket).await };
    let m: Media = api.post(&format!("/api/v1/media/{}/analyze", media_id(id)?), None).await?;
    let run = m.run(None).cloned();
    let number = run.as_ref().map(|r| r.run_number).unwrap_or_default();
    ctx.ui.note(format!("{}: run #{number} queued.", m.filename));
    if detach {
        if ctx.json {
            print_json(
                &json!({ "mediaId": m.id, "filename": m.filename, "runId": run.map(|r| r.id), "runNumber": number }),
            );
        }
        return Ok(0);
    }
    let target = Target { media_id: m.id.clone(), filename: m.filename.clone(), run_id: run.map(|r| r.id) };
    follow(ctx, &api, vec![target], socket, track::progress_area(&ctx.ui), &[]).await
}

async fn cancel(ctx: &Ctx, id: &str) -> Result<u8> {
    let api = ctx.authed()?;
    let m: Media = api.get(&format!("/api/v1/media/{}", media_id(id)?)).await?;
    let Some(run) = m.analysis_runs.iter().find(|r| !is_terminal(&r.status)) else {
        return Err(CliError::usage(
            format!("no analysis of {} is running", m.filename),
            "`drishtiksha show ID` shows its runs",
        ));
    };
    let _: Value = api.post(&format!("/api/v1/media/{}/runs/{}/cancel", m.id, run.id), None).await?;
    if ctx.json {
        print_json(
            &json!({ "mediaId": m.id, "runId": run.id, "runNumber": run.run_number, "cancellation": "requested" }),
        );
    } else {
        ctx.ui.note(format!(
            "{}: cancellation of run #{} requested; completed results are kept.",
            m.filename, run.run_number
        ));
    }
    Ok(0)
}

async fn delete(ctx: &Ctx, id: &str, yes: bool) -> Result<u8> {
    let api = ctx.authed()?;
    let m: Media = api.get(&format!("/api/v1/media/{}", media_id(id)?)).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                format!("refusing to delete {} without confirmation", m.filename),
                "add --yes",
            ));
        }
        eprint!("Delete {} ({}) with its {} run(s) and file? [y/N] ", m.filename, m.id, m.analysis_runs.len());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            ctx.ui.note("Not deleted.");
            return Ok(1);
        }
    }
    api.delete(&format!("/api/v1/media/{}", m.id)).await?;
    ctx.ui.note(format!("Deleted {} ({}).", m.filename, m.id));
    Ok(0)
}

async fn report(ctx: &Ctx, id: &str, output: Option<std::path::PathBuf>) -> Result<u8> {
    let api = ctx.authed()?;
    let id = media_id(id).map_err(|_| {
        CliError::usage(format!("{id:?} is not a run id"), "`drishtiksha show MEDIA_ID` lists its runs")
    })?;
    let (name, pdf) = match api.download(&format!("/api/v1/pdf/report/run/{id}")).await {
        Ok(r) => r,
        // A media id stands for its latest run.
        Err(e) if e.status == Some(404) => match api.get::<Media>(&format!("/api/v1/media/{id}")).await {
            Ok(m) => {
                let run = m.latest_analysis_run_id.ok_or(e)?;
                api.download(&format!("/api/v1/pdf/report/run/{run}")).await?
            }
            Err(_) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let path =
        output.unwrap_or_else(|| std::path::PathBuf::from(name.unwrap_or_else(|| format!("Analysis_Report_{id}.pdf"))));
    std::fs::write(&path, &pdf).map_err(|e| {
        CliError::usage(format!("cannot write {}: {e}", path.display()), "check the directory and its permissions")
    })?;
    if ctx.json {
        print_json(&json!({ "path": path.display().to_string(), "bytes": pdf.len() }));
    } else {
        println!("{}", path.display());
    }
    Ok(0)
}

fn media_types(m: &Value) -> String {
    let flag = |camel: &str, snake: &str| m[camel].as_bool().or_else(|| m[snake].as_bool()).unwrap_or(false);
    let mut kinds = Vec::new();
    for (c, s, name) in
        [("isVideo", "is_video", "video"), ("isAudio", "is_audio", "audio"), ("isImage", "is_image", "image")]
    {
        if flag(c, s) {
            kinds.push(name);
        }
    }
    kinds.join(", ")
}

async fn models(ctx: &Ctx) -> Result<u8> {
    let stats: Value = ctx.authed()?.get("/api/v1/monitoring/server-status").await?;
    if ctx.json {
        print_json(&stats);
        return Ok(0);
    }
    println!(
        "ML server: {} ({} ms){}",
        stats["status"].as_str().unwrap_or("unknown"),
        stats["responseTimeMs"].as_i64().unwrap_or_default(),
        stats["service_name"].as_str().map(|n| format!(" — {n}")).unwrap_or_default()
    );
    let mut t = ctx.ui.table();
    t.set_header(["Model", "Media types", "Loaded", "Description"]);
    for m in stats["models_info"].as_array().into_iter().flatten() {
        let loaded = m["loaded"].as_bool().unwrap_or(false);
        t.add_row(vec![
            Cell::new(m["name"].as_str().unwrap_or("?")),
            Cell::new(media_types(m)),
            Cell::new(if loaded { "yes" } else { "no" }),
            Cell::new(m["description"].as_str().unwrap_or_default()),
        ]);
    }
    println!("{t}");
    Ok(0)
}

async fn status(ctx: &Ctx) -> Result<u8> {
    let api = ctx.authed()?;
    let (ready_code, ready) = api.get_raw("/api/ready").await?;
    let user: User = api.get("/api/v1/auth/profile").await?;
    let queue: Value = api.get("/api/v1/monitoring/queue-status").await?;
    let ml = api.get::<Value>("/api/v1/monitoring/server-status").await;
    let verify =
        if user.role == "ADMIN" { api.get::<Value>("/api/v1/monitoring/verify-statuses").await.ok() } else { None };
    let ml_ok = ml.as_ref().is_ok_and(|s| matches!(s["status"].as_str(), Some("running" | "ok" | "healthy")));
    let healthy = ready_code == 200 && ml_ok;
    if ctx.json {
        print_json(&json!({
            "server": ctx.server.as_str(),
            "ready": ready,
            "queue": queue,
            "mlServer": match &ml { Ok(s) => json!({ "status": s["status"], "responseTimeMs": s["responseTimeMs"] }), Err(e) => json!({ "error": e.message }) },
            "statusCheck": verify,
        }));
        return Ok(if healthy { 0 } else { 1 });
    }
    let mut t = ctx.ui.table();
    t.set_header(["Check", "State"]);
    for (name, state) in ready["checks"].as_object().into_iter().flatten() {
        t.add_row(vec![Cell::new(name), Cell::new(state.as_str().unwrap_or("?"))]);
    }
    t.add_row(vec![
        Cell::new("ML server"),
        Cell::new(match &ml {
            Ok(s) => format!(
                "{} ({} ms)",
                s["status"].as_str().unwrap_or("?"),
                s["responseTimeMs"].as_i64().unwrap_or_default()
            ),
            Err(e) => e.message.clone(),
        }),
    ]);
    for key in ["pending", "active", "delayed", "completed", "failed"] {
        let label = match key {
            "completed" | "failed" => format!("runs {key} (24 h)"),
            _ => format!("runs {key}"),
        };
        t.add_row(vec![Cell::new(label), Cell::new(queue[key].to_string())]);
    }
    if let Some(v) = &verify {
        t.add_row(vec![
            Cell::new("status consistency"),
            Cell::new(format!("{} media, {} incorrect", v["totalMedia"], v["incorrectMedia"])),
        ]);
    }
    println!("{t}");
    Ok(if healthy { 0 } else { 1 })
}
