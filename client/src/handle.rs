//! [`StackCore`]: what every handle of one stack shares — its plug-in name, its [`Link`] to the
//! host (none for the process's own kernel stack) and its count of open sockets — and [`Hold`],
//! one open socket's claim on it. Runs in the application; [`crate::Stack`] is the public handle
//! over a core, [`crate::Socket`] and the C ABI's fd table keep a [`Hold`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::link::Link;

/// One stack, shared by its handles and its sockets.
#[derive(Debug)]
pub(crate) struct StackCore {
    plugin: String,
    /// `None` for the native kernel stack.
    link: Option<Arc<Link>>,
    /// Sockets open on this stack (see [`Hold`]).
    open: AtomicUsize,
}

impl StackCore {
    /// The process's own kernel stack.
    pub(crate) fn native() -> Arc<StackCore> {
        Arc::new(StackCore {
            plugin: String::new(),
            link: None,
            open: AtomicUsize::new(0),
        })
    }

    /// A stack of `plugin` served over `link`.
    pub(crate) fn hosted(plugin: &str, link: Link) -> Arc<StackCore> {
        Arc::new(StackCore {
            plugin: plugin.to_owned(),
            link: Some(Arc::new(link)),
            open: AtomicUsize::new(0),
        })
    }

    /// The plug-in name (`""` for the native stack).
    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The link to the host (`None` for the native stack).
    pub(crate) fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    /// Sockets open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// A hold of one open socket on a stack: while it lives, the stack counts it as open
/// (`delstack` fails with `EBUSY`) and its host stays up.
#[derive(Debug)]
pub(crate) struct Hold(Arc<StackCore>);

impl Hold {
    pub(crate) fn new(core: &Arc<StackCore>) -> Hold {
        core.open.fetch_add(1, Ordering::AcqRel);
        Hold(core.clone())
    }

    /// The stack held.
    pub(crate) fn core(&self) -> &Arc<StackCore> {
        &self.0
    }

    /// One more hold on the same stack (for an fd born of another, e.g. by accept).
    pub(crate) fn another(&self) -> Hold {
        Hold::new(&self.0)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}
