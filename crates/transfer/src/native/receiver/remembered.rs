//! The files a receiver acknowledged lately, to recognise one that a Redis
//! restart without its latest writes offers again.

use std::collections::{HashSet, VecDeque};

/// How many acknowledged files a receiver remembers.
const REMEMBERED: usize = 10_000;

/// A bounded set of the newest acknowledged files.
#[derive(Default)]
pub(super) struct Remembered {
    order: VecDeque<(String, String)>,
    set: HashSet<(String, String)>,
}

impl Remembered {
    /// Remembers `file` (the channel's epoch and the file's name) with the
    /// identity of its source.
    pub(super) fn insert(&mut self, file: &str, identity: &str) {
        if identity == "stream" {
            return; // never sent again under the same identity
        }
        let key = (file.to_owned(), identity.to_owned());
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }

    pub(super) fn contains(&self, file: &str, identity: &str) -> bool {
        self.set.contains(&(file.to_owned(), identity.to_owned()))
    }
}
