//! What a person sees: `drishtiksha analyze` in a real terminal (tmux), read back with
//! `capture-pane` while it runs.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{CATALOGUE, Stack, audio, video};

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn capture(&self, escapes: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "cli"]);
        if escapes {
            c.arg("-e");
        }
        let out = c.output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_render_and_update_in_a_terminal_while_results_piped_to_a_file_carry_no_escape_codes() {
    let s = Stack::start(CATALOGUE).await;
    let email = s.signup().await;
    s.login(&email).await;
    let folder = s.folder("tty", &[("clip.mp4", video()), ("voice.wav", audio())]);
    let results = s.dir.join("results.txt");

    let tmux = Tmux { socket: format!("drishtiksha-cli-{}", uuid::Uuid::new_v4().simple()) };
    // stderr (the bars) is the terminal, stdout (the results) goes to a file.
    let script = format!(
        "'{}' analyze '{}' > '{}'; echo EXIT=$?; sleep 300",
        support::binary(),
        folder.display(),
        results.display()
    );
    let config = s.config_home();
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "cli", "-x", "150", "-y", "30"])
        .args(["-e", &format!("XDG_CONFIG_HOME={}", config.display())])
        .args(["-e", &format!("DRISHTIKSHA_SERVER={}", s.server())])
        .args(["-e", "NO_COLOR="])
        .args(["sh", "-c", &script])
        .status()
        .expect("tmux");
    assert!(started.success(), "tmux new-session");

    // Every distinct screen until the command has exited.
    let mut screens: Vec<String> = Vec::new();
    let mut coloured = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let screen = tmux.capture(false);
        if screens.last() != Some(&screen) {
            coloured |= tmux.capture(true).contains("\u{1b}[");
            screens.push(screen.clone());
        }
        if screen.contains("EXIT=") {
            break;
        }
        assert!(Instant::now() < deadline, "no exit within 120 s; last screen:\n{screen}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let last = screens.last().cloned().unwrap_or_default();
    assert!(last.contains("EXIT=0"), "{last}");

    // A bar per model under its file, moving while the model runs.
    let bar_lines = |model: &str| -> BTreeSet<String> {
        screens
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| l.contains(model) && l.contains('[') && l.contains('%'))
            .map(|l| l.trim_end().to_string())
            .collect()
    };
    for model in ["VID-SIGLIP", "VID-EFFNET", "AUD-WAVE"] {
        let lines = bar_lines(model);
        assert!(lines.len() >= 2, "{model}'s bar never changed: {lines:#?}\nscreens:\n{}", screens.join("\n-----\n"));
    }
    let siglip = bar_lines("VID-SIGLIP");
    assert!(
        siglip.iter().any(|l| !l.contains("100%")) && siglip.iter().any(|l| l.contains("100%")),
        "a partial and a full bar: {siglip:#?}"
    );
    assert!(last.contains("clip.mp4") && last.contains("voice.wav") && last.contains("ANALYZED"), "{last}");
    assert!(coloured, "colours on a terminal");

    // The results in the file: the table, and not one escape code.
    let table = std::fs::read_to_string(&results).expect("results");
    assert!(table.contains("VID-SIGLIP") && table.contains("AUD-WAVE"), "{table}");
    assert!(!table.contains('\u{1b}'), "escape codes in {table:?}");
}
