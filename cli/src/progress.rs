//! Progress display for pulls and pushes: one bar per layer on a terminal, one line per
//! state change otherwise, nothing with `--quiet`. All of it on stderr.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use berth_core::cas::registry::Observer;
use berth_core::images::PullObserver;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_spec::image::Descriptor;

/// A layer's state as shown to the user; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Waiting,
    Downloading,
    Downloaded,
    Present,
    Unpacking,
    Done,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Downloading => "downloading",
            State::Downloaded => "downloaded",
            State::Present => "exists",
            State::Unpacking => "unpacking",
            State::Done => "done",
        }
    }
}

/// Per-layer pull progress.
pub struct Pull {
    quiet: bool,
    multi: Option<MultiProgress>,
    layers: Mutex<HashMap<String, (ProgressBar, State)>>,
}

impl Pull {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when quiet.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Pull {
            quiet,
            multi: (!quiet && tty)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            layers: Mutex::new(HashMap::new()),
        }
    }

    fn set(&self, digest: &str, state: State) {
        let mut layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        let Some((bar, current)) = layers.get_mut(digest) else {
            return;
        };
        if state <= *current {
            return;
        }
        *current = state;
        bar.set_message(state.word());
        if self.multi.is_none() && !self.quiet {
            eprintln!("{}: {}", short(digest), state.word());
        }
    }

    fn bytes(&self, digest: &str, n: u64) {
        let layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bar, _)) = layers.get(digest) {
            bar.set_position(n);
        }
    }

    /// Stops the bars (leaving their last state on screen).
    pub fn finish(&self) {
        let layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        for (bar, _) in layers.values() {
            bar.disable_steady_tick();
            bar.tick();
            bar.abandon();
        }
    }
}

impl PullObserver for Pull {
    fn layers(&self, layers: &[Descriptor]) {
        let style = ProgressStyle::with_template(
            "{prefix} {msg:11} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut map = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        for l in layers {
            let bar = ProgressBar::with_draw_target(Some(l.size()), ProgressDrawTarget::hidden());
            let bar = match &self.multi {
                Some(m) => m.add(bar),
                None => bar,
            };
            bar.set_style(style.clone());
            bar.set_prefix(short(l.digest().as_ref()).to_string());
            bar.set_message(State::Waiting.word());
            if self.multi.is_some() {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
            map.insert(l.digest().to_string(), (bar, State::Waiting));
        }
    }
    fn downloading(&self, layer: &Descriptor, offset: u64) {
        self.set(layer.digest().as_ref(), State::Downloading);
        self.bytes(layer.digest().as_ref(), offset);
    }
    fn progress(&self, layer: &Descriptor, bytes: u64) {
        self.bytes(layer.digest().as_ref(), bytes);
    }
    fn stored(&self, layer: &Descriptor, downloaded: bool) {
        let d = layer.digest().to_string();
        self.bytes(&d, layer.size());
        self.set(
            &d,
            if downloaded {
                State::Downloaded
            } else {
                State::Present
            },
        );
    }
    fn unpacking(&self, layer: &Descriptor) {
        self.set(layer.digest().as_ref(), State::Unpacking);
    }
    fn done(&self, layer: &Descriptor) {
        self.set(layer.digest().as_ref(), State::Done);
    }
}

/// One line per pushed blob on stderr (unless quiet).
pub struct Push {
    /// Print nothing.
    pub quiet: bool,
}

impl Observer for Push {
    fn done(&self, desc: &Descriptor, uploaded: bool) {
        if !self.quiet {
            let what = if uploaded { "pushed" } else { "exists" };
            eprintln!("{}: {what}", short(desc.digest().as_ref()));
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    hex.get(..12).unwrap_or(hex)
}
