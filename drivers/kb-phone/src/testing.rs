//! A scripted phone screen for tests: [`ScriptedPhone`] answers prompts from a queue and
//! records what it was shown; with nothing queued (or [`Scripted::Hold`]) it holds the
//! prompt open until the request is withdrawn or [`ScriptedPhone::answer_open`] answers.

use crate::agent::{Answer, PhonePrompter, Prompt};
use kb_token::OpContext;
use kb_types::Pin;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// Confirm, typing this PIN when the prompt asks for one.
    Confirm(Option<String>),
    /// Refuse with this note.
    Refuse(String),
    /// Leave the waiting screen.
    LeftScreen,
    /// Hold the prompt open (until withdrawn, or answered with `answer_open`).
    Hold,
}

#[derive(Default)]
struct State {
    script: VecDeque<Scripted>,
    seen: Vec<Prompt>,
    /// Answers for a prompt being held open.
    late: Option<Scripted>,
    held: usize,
    withdrawn: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct ScriptedPhone {
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for ScriptedPhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedPhone").field("prompts", &self.lock().seen.len()).finish()
    }
}

fn answer(s: Scripted) -> Answer {
    match s {
        Scripted::Confirm(pin) => Answer::Confirm(pin.map(Pin::new)),
        Scripted::Refuse(note) => Answer::Refuse(note),
        Scripted::LeftScreen | Scripted::Hold => Answer::LeftScreen,
    }
}

impl ScriptedPhone {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue an answer.
    pub fn push(&self, s: Scripted) {
        self.lock().script.push_back(s);
    }

    /// Queue "confirm, typing `pin`".
    pub fn push_pin(&self, pin: &str) {
        self.push(Scripted::Confirm(Some(pin.to_string())));
    }

    /// Every prompt shown so far.
    pub fn seen(&self) -> Vec<Prompt> {
        self.lock().seen.clone()
    }

    /// How many prompts asked for the PIN.
    pub fn pin_prompts(&self) -> usize {
        self.lock().seen.iter().filter(|p| p.pin.is_some()).count()
    }

    /// How many held prompts were withdrawn (the request was cancelled or the link closed).
    pub fn withdrawn(&self) -> usize {
        self.lock().withdrawn
    }

    /// Answer the prompt being held open (false if none is).
    pub fn answer_open(&self, s: Scripted) -> bool {
        let mut st = self.lock();
        if st.held == 0 {
            return false;
        }
        st.late = Some(s);
        self.changed.notify_all();
        true
    }

    /// Wait until `pred` holds for (prompts shown, prompts held open now, prompts
    /// withdrawn), or `timeout` passed (false).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(usize, usize, usize) -> bool) -> bool {
        let until = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if pred(st.seen.len(), st.held, st.withdrawn) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            st = self.changed.wait_timeout(st, until - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl PhonePrompter for ScriptedPhone {
    fn ask(&self, prompt: &Prompt, ctx: &OpContext) -> Answer {
        let mut st = self.lock();
        st.seen.push(prompt.clone());
        self.changed.notify_all();
        match st.script.pop_front() {
            Some(Scripted::Hold) | None => {}
            Some(s) => return answer(s),
        }
        st.held += 1;
        self.changed.notify_all();
        // Until answered late, or the request is withdrawn (a stop ends the wait at once;
        // a late answer is noticed within one short wait).
        loop {
            if let Some(s) = st.late.take() {
                st.held -= 1;
                self.changed.notify_all();
                return answer(s);
            }
            drop(st);
            let stopped = ctx.wait_stopped(Duration::from_millis(20)).is_some();
            st = self.lock();
            if stopped {
                st.held -= 1;
                st.withdrawn += 1;
                self.changed.notify_all();
                return Answer::LeftScreen;
            }
        }
    }
}
