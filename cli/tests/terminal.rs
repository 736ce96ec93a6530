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

    /// Types `cmd` into the pane's shell on a cleared screen; every distinct screen until it exits,
    /// and whether any of them carried colour.
    async fn run(&self, cmd: &str, tag: &str) -> (Vec<String>, bool) {
        let done = format!("EXIT-{tag}=");
        let line = format!("clear; {cmd}; echo {done}$?");
        let typed = self.cmd().args(["send-keys", "-t", "cli", "-l", &line]).status().expect("tmux send-keys");
        assert!(typed.success());
        self.cmd().args(["send-keys", "-t", "cli", "Enter"]).status().expect("tmux send-keys");
        let mut screens: Vec<String> = Vec::new();
        let mut coloured = false;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.capture(false);
            if screens.last() != Some(&screen) {
                coloured |= self.capture(true).contains("\u{1b}[3");
                screens.push(screen.clone());
            }
            // The typed line shows `EXIT-…=$?`; the answer a digit.
            if screen.split(&done).skip(1).any(|rest| rest.starts_with(|c: char| c.is_ascii_digit())) {
                // The finished screen itself, with its escape codes (a fast command may have
                // changed the screen between the two captures above).
                coloured |= self.capture(true).contains("\u{1b}[3");
                return (screens, coloured);
            }
            assert!(Instant::now() < deadline, "{cmd} did not finish within 120 s; last screen:\n{screen}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
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
    // A large file gets an upload bar (a real video's bytes first, as the api checks content).
    let mut big = video();
    big.resize(48 << 20, 0);
    big.extend_from_slice(b"big");
    let folder = s.folder("tty", &[("clip.mp4", video()), ("voice.wav", audio()), ("big.mp4", big)]);
    let results = s.dir.join("results.txt");

    let tmux = Tmux { socket: format!("drishtiksha-cli-{}", uuid::Uuid::new_v4().simple()) };
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "cli", "-x", "150", "-y", "30"])
        .args(["-e", &format!("XDG_CONFIG_HOME={}", s.config_home().display())])
        .args(["-e", &format!("DRISHTIKSHA_SERVER={}", s.server())])
        .args(["-e", "NO_COLOR=", "-e", "PS1=$ "])
        .args(["sh"])
        .status()
        .expect("tmux");
    assert!(started.success(), "tmux new-session");

    // stderr (the bars) is the terminal, stdout (the results) goes to a file.
    let bin = support::binary();
    let (screens, coloured) =
        tmux.run(&format!("'{bin}' analyze '{}' > '{}'", folder.display(), results.display()), "analyze").await;
    let last = screens.last().cloned().unwrap_or_default();
    assert!(last.contains("EXIT-analyze=0"), "{last}");

    // A bar per model under its file, moving while the model runs.
    let lines_with = |needles: &[&str]| -> BTreeSet<String> {
        screens
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(|l| l.trim_end().to_string())
            .collect()
    };
    for model in ["VID-SIGLIP", "VID-EFFNET", "AUD-WAVE"] {
        let lines = lines_with(&[model, "[", "%"]);
        assert!(lines.len() >= 2, "{model}'s bar never changed: {lines:#?}\nscreens:\n{}", screens.join("\n-----\n"));
    }
    let siglip = lines_with(&["VID-SIGLIP", "[", "%"]);
    assert!(
        siglip.iter().any(|l| !l.contains("100%")) && siglip.iter().any(|l| l.contains("100%")),
        "a partial and a full bar: {siglip:#?}"
    );
    let uploading = lines_with(&["uploading", "big.mp4", "MiB"]);
    assert!(!uploading.is_empty(), "no upload bar for big.mp4:\n{}", screens.join("\n-----\n"));
    for f in ["big.mp4", "clip.mp4", "voice.wav"] {
        assert!(last.contains(&format!("{f} ANALYZED")), "{f}: {last}");
    }
    assert!(coloured, "colours on a terminal");

    // The results in the file: the table, and not one escape code.
    let table = std::fs::read_to_string(&results).expect("results");
    assert!(table.contains("VID-SIGLIP") && table.contains("AUD-WAVE"), "{table}");
    assert!(!table.contains('\u{1b}'), "escape codes in {table:?}");

    // On the terminal the table is coloured, unless NO_COLOR says otherwise.
    let (screens, coloured) = tmux.run(&format!("'{bin}' list"), "list").await;
    assert!(coloured && screens.last().is_some_and(|s| s.contains("ANALYZED")), "{screens:#?}");
    let (screens, coloured) = tmux.run(&format!("NO_COLOR=1 '{bin}' list"), "nocolor").await;
    assert!(!coloured && screens.last().is_some_and(|s| s.contains("ANALYZED")), "{screens:#?}");
}
