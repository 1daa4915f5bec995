//! [`Signal`]: wake every task waiting for a condition on shared state.
//!
//! `tokio::sync::watch` spreads its waiters over several notifiers picked
//! at random, so the order in which waiters wake differs from run to run; a
//! simulation could then not replay a run from its seed. A [`Signal`] keeps
//! one list of waiters, woken in order.

use tokio::sync::Notify;

/// A condition variable for async code: [`bump`](Self::bump) after
/// changing the state; [`wait_for`](Self::wait_for) checks a condition each
/// time.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    notify: Notify,
}

impl Signal {
    /// Wakes every waiter (they check their condition again).
    pub(crate) fn bump(&self) {
        self.notify.notify_waiters();
    }

    /// Waits until `check` returns `Some`. No bump between the check and
    /// the wait is lost. Cancel-safe.
    pub(crate) async fn wait_for<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check() {
                return v;
            }
            notified.await;
        }
    }
}
