//! Follow mode: the log keeps its newest line in view as lines arrive. It pauses only when
//! the reader scrolls away from the bottom (wheel, touch, keys, the scrollbar: input in
//! the last second) or jumps up by more than a screen (a script, Home); a scroll caused
//! by the log growing never turns it off. Reaching the bottom turns it back on.

use super::rows::ROW_PX;
use crate::pages::now_ms;
use leptos::prelude::*;

/// Reader input this recent (ms) makes a scroll the reader's.
const INPUT_WINDOW_MS: f64 = 1000.0;

#[derive(Clone, Copy)]
pub struct Follow {
    pub on: ReadSignal<bool>,
    set_on: WriteSignal<bool>,
    /// Where the last scroll (ours or the reader's) left the log.
    last_top: StoredValue<f64>,
    last_input: StoredValue<f64>,
}

impl Follow {
    pub fn new() -> Follow {
        let (on, set_on) = signal(true);
        Follow {
            on,
            set_on,
            last_top: StoredValue::new(0.0),
            last_input: StoredValue::new(f64::NEG_INFINITY),
        }
    }

    /// The reader touched the log (wheel, touch, key, pointer).
    pub fn input(&self) {
        self.last_input.set_value(now_ms().unwrap_or_default());
    }

    /// We scrolled the log ourselves, to `top`.
    pub fn scrolled_by_us(&self, top: f64) {
        self.last_top.set_value(top);
    }

    /// A scroll event: decides whether follow mode goes on or off.
    pub fn scrolled(&self, top: f64, height: f64, scroll_height: f64) {
        let at_bottom = top + height >= scroll_height - ROW_PX * 1.5;
        let jumped_up = top < self.last_top.get_value() - height;
        let by_reader =
            now_ms().unwrap_or_default() - self.last_input.get_value() < INPUT_WINDOW_MS;
        self.last_top.set_value(top);
        let on = self.on.get_untracked();
        if at_bottom && !on {
            self.set_on.set(true);
        } else if !at_bottom && (by_reader || jumped_up) && on {
            self.set_on.set(false);
        }
    }

    pub fn pause(&self) {
        self.set_on.set(false);
    }

    pub fn resume(&self) {
        self.set_on.set(true);
    }
}
