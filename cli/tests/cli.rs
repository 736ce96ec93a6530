//! The `drishtiksha` binary against a running api + worker + ML stand-in: what an analyst types,
//! what they see, and the exit status a script gates on.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{CATALOGUE, Cli, MODELS, PASSWORD, Stack, audio, image, video};

fn assert_one_line(out: &support::Output, needle: &str) {
    let lines = out.error_lines();
    assert_eq!(lines.len(), 1, "one line on stderr: {out:?}");
    assert!(lines[0].contains(needle), "{needle:?} in {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_private_token_and_bad_credentials_or_servers_are_one_line_and_exit_2() {
    let s = Stack::start(CATALOGUE).await;
    let email = s.signup().await;
    let creds = s.config_home().join("drishtiksha/credentials.json");

    let out = s.cli().stdin("not-the-password\n").run(&["login", "--email", &email, "--password-stdin"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, "Invalid email or password");
    assert!(!creds.exists());

    let out = s.cli().stdin(&format!("{PASSWORD}\n")).run(&["login", "-e", &email, "--password-stdin"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains(PASSWORD) && !out.stdout.contains(PASSWORD));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&creds).expect("credentials file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: Value = serde_json::from_slice(&std::fs::read(&creds).expect("read")).expect("json");
    assert_eq!(saved["email"], email.as_str());
    let token = saved["token"].as_str().expect("token").to_string();

    let out = s.cli().run(&["whoami"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(&email) && out.stdout.contains("USER"), "{out:?}");
    // The saved server is used when none is given.
    let out = s.cli().env_remove("DRISHTIKSHA_SERVER").run(&["whoami", "--json"]).await;
    assert_eq!(out.json()["email"], email.as_str());

    // An unreachable server, an unsupported file: one line each, exit 2.
    let nowhere = format!("http://127.0.0.1:{}", drishtiksha_testkit::free_port());
    let out = Cli::new(&nowhere, &s.config_home()).env("DRISHTIKSHA_TOKEN", &token).run(&["list"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, &format!("cannot reach the server at {nowhere}"));
    let notes = s.folder("docs", &[("notes.txt", b"hello".to_vec())]).join("notes.txt");
    let out = s.cli().run(&["analyze", notes.to_str().expect("path")]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, "notes.txt: unsupported file type");
    let out = s.cli().run(&["analyze"]).await;
    assert_eq!(out.code, 2, "usage error: {out:?}");

    // Logout forgets the token here (and asks the server to revoke it).
    let out = s.cli().run(&["logout"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!creds.exists());
    let out = s.cli().run(&["whoami"]).await;
    assert_eq!(out.code, 2);
    assert_one_line(&out, "not logged in");
    let out = s.cli().env("DRISHTIKSHA_TOKEN", "not-a-token").run(&["whoami"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, "Invalid access token. (hint: log in again with `drishtiksha login`)");

    // signup: the server's validation message, then a new account that is logged in at once.
    let new_email = format!("new-{email}");
    let signup = |pw: &str| {
        let args = ["signup", "-e", &new_email, "--first-name", "Grace", "--last-name", "Hopper", "--password-stdin"]
            .map(str::to_string);
        let cli = s.cli().stdin(&format!("{pw}\n"));
        async move { cli.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let out = signup("short").await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, "Validation failed: Password must be at least 8 characters long");
    let out = signup(PASSWORD).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli().run(&["whoami"]).await;
    assert!(out.stdout.contains(&new_email) && out.stdout.contains("Grace Hopper"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_reports_every_model_and_gates_on_failures() {
    let s = Stack::start(CATALOGUE).await;
    let email = s.signup().await;
    s.login(&email).await;

    // A folder with an image, an audio file, a video, and a file that is skipped.
    let folder = s.folder(
        "inbox",
        &[
            ("face.png", image("inbox")),
            ("voice.wav", audio()),
            ("clip.mp4", video()),
            ("readme.txt", b"not media".to_vec()),
        ],
    );
    let out = s.cli().run(&["analyze", folder.to_str().expect("path")]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for name in MODELS.iter().chain(&["face.png", "voice.wav", "clip.mp4"]) {
        assert!(out.stdout.contains(name), "{name} in the table: {}", out.stdout);
    }
    assert_eq!(out.stdout.matches("ANALYZED").count(), 3, "{}", out.stdout);
    assert!(out.stderr.contains("Skipping 1 file"), "{}", out.stderr);
    assert!(!out.stderr.contains("polling"), "the Socket.IO connection to the api worked: {}", out.stderr);
    assert!(!out.stdout.contains('\u{1b}') && !out.stderr.contains('\u{1b}'), "no escape codes when piped");

    // A file the model cannot process: exit 1 and the reason.
    let bad = s.folder("bad", &[("broken.png", image("STANDIN:422"))]).join("broken.png");
    let out = s.cli().run(&["analyze", bad.to_str().expect("path")]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    assert!(out.stdout.contains("simulated media processing error"), "{}", out.stdout);

    // A file the server refuses: its reason, exit 2.
    let long = "x".repeat(501);
    let out = s.cli().run(&["analyze", bad.to_str().expect("path"), "--description", &long]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("broken.png: Validation failed: Description must be at most 500 characters"),
        "{out:?}"
    );

    // --json: one parseable document on stdout.
    let one = s.folder("one", &[("portrait.png", image("STANDIN:fake"))]).join("portrait.png");
    let out = s.cli().run(&["analyze", one.to_str().expect("path"), "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = out.json();
    let r = &v["results"][0];
    assert_eq!(r["filename"], "portrait.png");
    assert_eq!(r["status"], "ANALYZED");
    assert_eq!(r["verdict"], "DEEPFAKE");
    assert_eq!(r["analyses"][0]["model"], "IMG-CHECK");
    assert_eq!(r["analyses"][0]["prediction"], "FAKE");
    assert!(r["analyses"][0]["confidence"].as_f64().is_some_and(|c| c > 0.5));
    let (media_id, run_id) = (r["mediaId"].as_str().expect("id"), r["runId"].as_str().expect("run"));

    // The report of that run, readable as text.
    let pdf = s.dir.join("report.pdf");
    let out = s.cli().run(&["report", run_id, "-o", pdf.to_str().expect("path")]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output().expect("pdftotext");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Deepfake Detection Analysis Report") && text.contains("portrait.png"), "{text}");

    // list and show name what the server holds.
    let out = s.cli().run(&["list", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["results"].as_array().map(Vec::len), Some(5));
    let out = s.cli().run(&["show", media_id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Run #1 ANALYZED") && out.stdout.contains("IMG-CHECK"), "{}", out.stdout);

    // models and status.
    let out = s.cli().run(&["models"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for m in MODELS {
        assert!(out.stdout.contains(m), "{m}: {}", out.stdout);
    }
    assert!(out.stdout.contains("video") && out.stdout.contains("audio") && out.stdout.contains("image"));
    let out = s.cli().run(&["status", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = out.json();
    assert_eq!(v["ready"]["checks"]["postgres"], "ok");
    assert!(v["queue"]["completed"].as_i64().is_some_and(|n| n >= 5), "{v}");
    assert!(v["statusCheck"].is_null(), "the consistency check is for ADMINs only: {v}");
    sqlx::query("UPDATE users SET role = 'ADMIN' WHERE email = $1").bind(&email).execute(&s.db).await.expect("admin");
    let out = s.cli().run(&["status", "--json"]).await;
    let v = out.json();
    assert_eq!(
        (v["statusCheck"]["totalMedia"].as_i64(), v["statusCheck"]["incorrectMedia"].as_i64()),
        (Some(5), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_batch_is_resumed_by_watch_and_runs_can_be_rerun_cancelled_and_deleted() {
    // A slow image model: the batch is still running when `watch` attaches.
    let slow = CATALOGUE.replace(r#""latency_ms": 400"#, r#""latency_ms": 4000"#);
    let s = Stack::start(&slow).await;
    let email = s.signup().await;
    s.login(&email).await;
    let batch = s.folder("batch", &[("a.png", image("a")), ("b.png", image("b"))]);
    let out = s.cli().run(&["analyze", batch.to_str().expect("path"), "--detach", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let uploads = out.json()["uploads"].as_array().cloned().expect("uploads");
    assert_eq!(uploads.len(), 2);
    assert!(uploads.iter().all(|u| u["status"] == "QUEUED"), "{uploads:?}");

    // `watch` with no ids finds both unfinished runs and follows them to the end.
    let out = s.cli().run(&["watch", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let results = out.json()["results"].as_array().cloned().expect("results");
    let mut names: Vec<&str> = results.iter().filter_map(|r| r["filename"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["a.png", "b.png"]);
    assert!(results.iter().all(|r| r["status"] == "ANALYZED" && r["analyses"][0]["status"] == "COMPLETED"));
    assert!(out.stderr.contains("IMG-CHECK"), "progress lines on stderr: {}", out.stderr);
    let out = s.cli().run(&["watch"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("Nothing to watch"), "{out:?}");

    // rerun follows run #2 without the socket: polling, said once.
    let id = uploads[0]["mediaId"].as_str().expect("id").to_string();
    let out = s.cli().run(&["rerun", &id, "--no-socket", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["results"][0]["runNumber"], 2);
    assert_eq!(out.stderr.matches("polling").count(), 1, "{}", out.stderr);

    // A run that hangs is cancelled; watching it then ends with exit 1.
    let stuck = s.folder("stuck", &[("stuck.png", image("STANDIN:hang"))]).join("stuck.png");
    let out = s.cli().run(&["analyze", stuck.to_str().expect("path"), "--detach", "--json"]).await;
    let stuck_id = out.json()["uploads"][0]["mediaId"].as_str().expect("id").to_string();
    // Cancel once the model call is in flight.
    drishtiksha_testkit::eventually(Duration::from_secs(60), || async {
        let out = s.cli().run(&["show", &stuck_id, "--json"]).await;
        (out.json()["analysisRuns"][0]["analyses"][0]["status"] == "RUNNING").then_some(())
    })
    .await
    .expect("the model call started");
    let out = s.cli().run(&["cancel", &stuck_id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli().run(&["watch", &stuck_id, "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["results"][0]["status"], "CANCELLED");

    // delete asks first; without a terminal it refuses unless --yes.
    let out = s.cli().run(&["delete", &stuck_id]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_one_line(&out, "--yes");
    let out = s.cli().run(&["delete", &stuck_id, "--yes"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.cli().run(&["show", &stuck_id]).await;
    assert_eq!(out.code, 2);
    assert_one_line(&out, "Media not found or you do not have permission.");
}
