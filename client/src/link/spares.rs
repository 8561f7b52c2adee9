//! [`Spares`]: native sockets a link received ahead of demand ([`ioth_proto::Request::Sockets`]),
//! kept per kind of socket until an `msocket` asks for one. Runs in the application.
//!
//! The policy keeps a stack that makes one socket of a kind at one fd (the socket itself): the
//! first `msocket` of a kind is a plain `Socket` request and leaves no spare; only when the same
//! kind is asked again on the same stack does the link ask for a batch of [`BATCH`], hand out
//! one and keep the rest. At most [`KEYS`] kinds are remembered: a new kind beyond them forgets
//! the one used least recently, closing its spares. Spares arrived close-on-exec
//! (`MSG_CMSG_CLOEXEC`), so a program the application execs never inherits them.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};

/// Sockets asked for in one batch (the one needed and the spares).
pub(crate) const BATCH: u32 = 8;

/// Kinds of socket remembered per link.
pub(crate) const KEYS: usize = 4;

/// A kind of socket: `domain`, `type` with its flags, `protocol` of socket(2).
pub(crate) type Key = (i32, i32, i32);

/// One kind's entry: asked before, and the spares of it.
#[derive(Debug)]
struct Entry {
    key: Key,
    fds: Vec<OwnedFd>,
}

/// The spare sockets of one link, by kind, the most recently used kind last.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    entries: VecDeque<Entry>,
}

/// What [`Spares::take`] found for a kind.
pub(crate) enum Take {
    /// A spare: hand it out.
    Spare(OwnedFd),
    /// The kind was asked for before but has no spare left: ask for a batch.
    Again,
    /// The kind is new (now remembered): ask for one socket.
    First,
}

impl Spares {
    /// A spare of kind `key`, or what to ask the host for. Marks the kind as the most recently
    /// used (remembering it if new, which may forget the least recently used kind).
    pub(crate) fn take(&mut self, key: Key) -> Take {
        match self.entries.iter().position(|e| e.key == key) {
            Some(i) => {
                let mut e = self.entries.remove(i).expect("index found");
                let got = e.fds.pop();
                self.entries.push_back(e);
                got.map_or(Take::Again, Take::Spare)
            }
            None => {
                if self.entries.len() >= KEYS {
                    // Closes the spares of the kind used least recently.
                    self.entries.pop_front();
                }
                self.entries.push_back(Entry {
                    key,
                    fds: Vec::new(),
                });
                Take::First
            }
        }
    }

    /// Keeps `fds`, sockets of kind `key`, as spares (if the kind was forgotten meanwhile, they
    /// are closed).
    pub(crate) fn keep(&mut self, key: Key, fds: Vec<OwnedFd>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.fds.extend(fds);
        }
    }

    /// Forgets kind `key` (its next socket is a first again).
    pub(crate) fn forget(&mut self, key: Key) {
        self.entries.retain(|e| e.key != key);
    }

    /// Closes the spares of every kind but `key`; whether there were any.
    pub(crate) fn release_others(&mut self, key: Key) -> bool {
        let mut any = false;
        for e in self.entries.iter_mut().filter(|e| e.key != key) {
            any |= !e.fds.is_empty();
            e.fds.clear();
        }
        any
    }

    /// Closes every spare, remembering the kinds (their next socket is a batch again).
    pub(crate) fn clear_spares(&mut self) {
        for e in &mut self.entries {
            e.fds.clear();
        }
    }

    /// Closes every spare and forgets every kind.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many spares are held.
    pub(crate) fn count(&self) -> usize {
        self.entries.iter().map(|e| e.fds.len()).sum()
    }
}

/// The spares of every link of this process (dead ones pruned as the list grows), so that a
/// call that fails for lack of fds can have those of the other stacks closed
/// ([`release_elsewhere`]): spares never make a call fail that would succeed without them.
static ALL: Mutex<Vec<Weak<Mutex<Spares>>>> = Mutex::new(Vec::new());

/// A new, empty set of spares for a link, known to [`release_elsewhere`].
pub(crate) fn register() -> Arc<Mutex<Spares>> {
    let s = Arc::new(Mutex::new(Spares::default()));
    let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    // Pruned when the list doubles: amortised O(1) per link.
    if all.len() >= 64 && all.len().is_power_of_two() {
        all.retain(|w| w.strong_count() > 0);
    }
    all.push(Arc::downgrade(&s));
    s
}

/// Closes the spares of every link but `except` (whose lock the caller may hold); whether any
/// were closed. A link whose lock is taken (a batch on its way) is left alone.
pub(crate) fn release_elsewhere(except: Option<&Arc<Mutex<Spares>>>) -> bool {
    let live: Vec<Arc<Mutex<Spares>>> = ALL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut any = false;
    for s in live {
        if except.is_some_and(|e| Arc::ptr_eq(e, &s)) {
            continue;
        }
        if let Ok(mut s) = s.try_lock() {
            any |= s.count() > 0;
            s.clear_spares();
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect()
    }

    #[test]
    fn first_then_again_then_spares_in_turn() {
        let mut s = Spares::default();
        let k = (2, 1, 0);
        assert!(matches!(s.take(k), Take::First));
        assert!(matches!(s.take(k), Take::Again));
        s.keep(k, fds(2));
        assert_eq!(s.count(), 2);
        assert!(matches!(s.take(k), Take::Spare(_)));
        assert!(matches!(s.take(k), Take::Spare(_)));
        assert!(matches!(s.take(k), Take::Again));
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn a_fifth_kind_forgets_the_least_recently_used_and_closes_its_spares() {
        let mut s = Spares::default();
        let keys: Vec<Key> = (0..KEYS as i32).map(|i| (2, 1, i)).collect();
        for &k in &keys {
            assert!(matches!(s.take(k), Take::First));
            s.keep(k, fds(1));
        }
        assert_eq!(s.count(), KEYS);
        // The first kind used again: the second is now the least recently used.
        assert!(matches!(s.take(keys[0]), Take::Spare(_)));
        assert!(matches!(s.take((10, 2, 0)), Take::First));
        assert_eq!(s.count(), KEYS - 2);
        assert!(matches!(s.take(keys[1]), Take::First), "forgotten");
        // Spares of a forgotten kind are closed, not kept.
        s.keep((99, 9, 9), fds(3));
        assert_eq!(s.count(), KEYS - 3);
    }

    #[test]
    fn release_others_keeps_the_kind_asked_for() {
        let mut s = Spares::default();
        let (a, b) = ((2, 1, 0), (2, 2, 0));
        for k in [a, b] {
            s.take(k);
            s.keep(k, fds(2));
        }
        assert!(s.release_others(a));
        assert_eq!(s.count(), 2);
        assert!(!s.release_others(a));
        s.clear();
        assert_eq!(s.count(), 0);
        assert!(matches!(s.take(a), Take::First));
    }
}
