//! Helpers for tests that run `protobase node` processes: children killed
//! on drop, and free 127.0.0.1 ports for their configs. Included with
//! `#[path = "support/processes.rs"] mod processes;`.

#![allow(dead_code)]

use std::process::Child;

/// Children killed on drop, so a failing test leaves no process behind.
pub struct Nodes(pub Vec<Option<Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` distinct ports free on 127.0.0.1 when asked (all bound at once, so
/// they differ; released before they are returned).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
