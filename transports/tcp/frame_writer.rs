//! A connection's write end, shared by everything that sends frames on it.
//!
//! A sender writes its frame to the socket itself when nothing else is being
//! written: no hand-off to a writer task, whose wake-up (often of another
//! thread) costs more than the write. Those writes are non-blocking polls
//! only, so a sender cancelled mid-send never leaves half a frame on the
//! stream: whatever the socket does not take at once is queued, and the
//! writer task writes it, and every frame queued behind it, in order
//! (several queued frames in one write). The queue is bounded: a sender
//! waits for room before it queues anything.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::{IO_BUFFER, WRITE_QUEUE, WriteEnd};

/// See the [module docs](self).
pub(super) struct FrameWriter {
    state: Mutex<State>,
    /// Wakes the writer task: something was queued, or the writer closed.
    work: Notify,
    /// Wakes senders waiting for room in the queue (or for the close).
    room: Notify,
    /// Most frames queued; a sender waits for room beyond that.
    limit: usize,
}

struct State {
    /// The write end; `None` while the writer task writes (it holds it
    /// across its awaits) and once closed.
    io: Option<WriteEnd>,
    /// Frames (or a frame's unwritten rest, first) waiting for the writer
    /// task, in order.
    queued: VecDeque<Vec<u8>>,
    /// Bytes written directly but not yet flushed through the write end
    /// (TLS buffers records); the writer task flushes them.
    unflushed: bool,
    /// Why the writer closed (a write failed, or the connection ended).
    closed: Option<String>,
}

impl FrameWriter {
    /// A writer over `io`; [`run`](Self::run) must be spawned for it.
    pub(super) fn new(io: WriteEnd) -> Self {
        Self::with_limit(io, WRITE_QUEUE)
    }

    /// A writer queueing at most `limit` frames.
    fn with_limit(io: WriteEnd, limit: usize) -> Self {
        FrameWriter {
            state: Mutex::new(State {
                io: Some(io),
                queued: VecDeque::new(),
                unflushed: false,
                closed: None,
            }),
            work: Notify::new(),
            room: Notify::new(),
            limit: limit.max(1),
        }
    }

    /// Sends `frame`: written now if the socket takes it, else queued for
    /// the writer task. Cancel safe: the frame is sent whole or not at all
    /// (only the wait for room in the queue awaits). Fails once the writer
    /// closed (the reason).
    pub(super) async fn send(&self, mut frame: Vec<u8>) -> Result<(), String> {
        loop {
            frame = match self.try_send(frame)? {
                None => return Ok(()),
                Some(full) => full,
            };
            // Registered before the queue is checked again, so that no
            // wake-up is lost.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.full() {
                room.await;
            }
        }
    }

    /// Writes or queues `frame`, or gives it back when the queue is full.
    fn try_send(&self, frame: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let mut st = self.state.lock();
        if let Some(why) = &st.closed {
            return Err(why.clone());
        }
        if st.queued.len() >= self.limit {
            return Ok(Some(frame));
        }
        let idle = st.queued.is_empty() && !st.unflushed;
        match st.io.as_mut() {
            Some(io) if idle => match write_now(io, &frame) {
                Ok(Written::All) => return Ok(None),
                Ok(Written::Unflushed) => st.unflushed = true,
                Ok(Written::Part(0)) => st.queued.push_back(frame),
                Ok(Written::Part(n)) => st.queued.push_back(frame[n..].to_vec()),
                Err(e) => {
                    drop(st);
                    let why = format!("write failed: {e}");
                    self.close(&why);
                    return Err(why);
                }
            },
            _ => st.queued.push_back(frame),
        }
        drop(st);
        self.work.notify_one();
        Ok(None)
    }

    /// Whether a sender must wait for room (not once closed).
    fn full(&self) -> bool {
        let st = self.state.lock();
        st.closed.is_none() && st.queued.len() >= self.limit
    }

    /// Closes the writer: queued frames are dropped, later sends fail with
    /// `why`, the writer task ends.
    pub(super) fn close(&self, why: &str) {
        {
            let mut st = self.state.lock();
            if st.closed.is_none() {
                st.closed = Some(why.to_owned());
            }
            st.io = None;
            st.queued.clear();
        }
        self.wake_all();
    }

    fn wake_all(&self) {
        self.work.notify_one();
        self.room.notify_waiters();
    }

    /// The writer task: writes what senders queued, until closed or a
    /// write fails (then the error, and the writer is closed).
    pub(super) async fn run(&self) -> io::Result<()> {
        let mut buf = Vec::with_capacity(IO_BUFFER);
        loop {
            let work = self.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let taken = {
                let mut st = self.state.lock();
                if st.closed.is_some() {
                    return Ok(());
                }
                if st.queued.is_empty() && !st.unflushed {
                    None
                } else {
                    // Only this task takes the write end out; it is back
                    // here unless closed (checked above).
                    debug_assert!(st.io.is_some(), "a second writer task");
                    st.unflushed = false;
                    let batch = std::mem::take(&mut st.queued);
                    st.io.take().map(|io| (io, batch))
                }
            };
            let Some((mut io, batch)) = taken else {
                work.await;
                continue;
            };
            self.room.notify_waiters();
            if let Err(e) = write_batch(&mut io, batch, &mut buf).await {
                self.close(&format!("write failed: {e}"));
                return Err(e);
            }
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return Ok(());
            }
            st.io = Some(io);
        }
    }
}

/// What a direct write got done.
enum Written {
    /// The whole frame, flushed.
    All,
    /// The whole frame, not yet flushed.
    Unflushed,
    /// Only the first `n` bytes (the rest must be queued).
    Part(usize),
}

/// Writes as much of `frame` as the socket takes now, without waiting.
fn write_now(io: &mut WriteEnd, frame: &[u8]) -> io::Result<Written> {
    // Polled without a waker: what is not done now, the writer task (which
    // polls with its own) does.
    let mut cx = Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < frame.len() {
        match Pin::new(&mut **io).poll_write(&mut cx, &frame[done..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => done += n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(Written::Part(done)),
        }
    }
    match Pin::new(&mut **io).poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Ok(Written::All),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Written::Unflushed),
    }
}

/// Writes `batch` in order, small frames gathered into one write, then
/// flushes.
async fn write_batch(
    io: &mut WriteEnd,
    batch: VecDeque<Vec<u8>>,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    for frame in batch {
        if !buf.is_empty() && buf.len() + frame.len() > IO_BUFFER {
            io.write_all(buf).await?;
            buf.clear();
        }
        if frame.len() >= IO_BUFFER {
            io.write_all(&frame).await?;
        } else {
            buf.extend_from_slice(&frame);
        }
    }
    if !buf.is_empty() {
        io.write_all(buf).await?;
        buf.clear();
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A frame: u32 LE length, sender, sequence, then filler bytes.
    fn frame(sender: u8, seq: u32, filler: usize) -> Vec<u8> {
        let body_len = 5 + filler;
        let mut f = Vec::with_capacity(4 + body_len);
        f.extend_from_slice(&(body_len as u32).to_le_bytes());
        f.push(sender);
        f.extend_from_slice(&seq.to_le_bytes());
        f.extend(std::iter::repeat_n(sender ^ 0x5A, filler));
        f
    }

    /// Reads frames until the stream ends; panics on a torn one.
    async fn read_frames(mut r: tokio::io::DuplexStream, seed: u64) -> Vec<(u8, u32)> {
        let mut got = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).await.is_err() {
                return got;
            }
            let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
            r.read_exact(&mut body)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: torn frame: {e}"));
            let sender = body[0];
            let seq = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
            assert!(
                body[5..].iter().all(|b| *b == sender ^ 0x5A),
                "seed {seed}: frame of sender {sender} seq {seq} mixed with another"
            );
            got.push((sender, seq));
        }
    }

    /// Many senders over a socket that takes a few bytes at a time, some
    /// cancelled while they wait: every frame sent arrives whole, in each
    /// sender's order, and nothing of a cancelled send arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_arrive_whole_and_in_order_and_cancelled_sends_leave_nothing() {
        for seed in [1u64, 2, 3, 4] {
            let (w, r) = tokio::io::duplex(61);
            // A short queue: senders wait for room, and some are cancelled
            // while they wait.
            let writer = Arc::new(FrameWriter::with_limit(Box::new(w), 3));
            let task = tokio::spawn({
                let writer = Arc::clone(&writer);
                async move { writer.run().await }
            });
            let reader = tokio::spawn(read_frames(r, seed));
            let sent = Arc::new(AtomicUsize::new(0));
            let cancelled = Arc::new(AtomicUsize::new(0));
            let mut senders = Vec::new();
            for sender in 0..6u8 {
                let (writer, sent, cancelled) = (
                    Arc::clone(&writer),
                    Arc::clone(&sent),
                    Arc::clone(&cancelled),
                );
                senders.push(tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(seed * 100 + u64::from(sender));
                    let mut seq = 0u32;
                    for _ in 0..300 {
                        let f = frame(sender, seq, rng.usize(0..200));
                        let ok = if rng.u8(..4) == 0 {
                            // Cancelled unless it completes at once.
                            tokio::select! {
                                biased;
                                r = writer.send(f) => Some(r),
                                () = tokio::task::yield_now() => None,
                            }
                        } else {
                            Some(writer.send(f).await)
                        };
                        match ok {
                            Some(Ok(())) => {
                                sent.fetch_add(1, Ordering::SeqCst);
                                seq += 1;
                            }
                            Some(Err(e)) => panic!("seed {seed}: send failed: {e}"),
                            None => {
                                cancelled.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }));
            }
            for s in senders {
                s.await.unwrap();
            }
            // Let the writer drain, then end the stream.
            loop {
                let idle = {
                    let st = writer.state.lock();
                    st.queued.is_empty() && st.io.is_some() && !st.unflushed
                };
                if idle {
                    break;
                }
                tokio::task::yield_now().await;
            }
            writer.close("done");
            task.await.unwrap().unwrap();
            let got = reader.await.unwrap();
            assert_eq!(got.len(), sent.load(Ordering::SeqCst), "seed {seed}");
            assert!(
                cancelled.load(Ordering::SeqCst) > 0,
                "seed {seed}: no send was cancelled while waiting"
            );
            for sender in 0..6u8 {
                let seqs: Vec<u32> = got
                    .iter()
                    .filter(|(s, _)| *s == sender)
                    .map(|(_, q)| *q)
                    .collect();
                let expected: Vec<u32> = (0..seqs.len() as u32).collect();
                assert_eq!(seqs, expected, "seed {seed}: sender {sender} out of order");
            }
        }
    }

    /// A write end that fails once `limit` bytes went through.
    struct FailAfter {
        limit: usize,
        written: usize,
    }

    impl AsyncWrite for FailAfter {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.written + buf.len() > self.limit {
                return Poll::Ready(Err(io::Error::other("disk on fire")));
            }
            self.written += buf.len();
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    use tokio::io::AsyncWrite;

    #[tokio::test]
    async fn a_failed_write_closes_the_writer_with_its_reason() {
        let writer = FrameWriter::new(Box::new(FailAfter {
            limit: 100,
            written: 0,
        }));
        writer.send(frame(1, 0, 50)).await.unwrap();
        let err = writer.send(frame(1, 1, 50)).await.unwrap_err();
        assert!(err.contains("disk on fire"), "{err}");
        let again = writer.send(frame(1, 2, 1)).await.unwrap_err();
        assert_eq!(again, err);
        // The writer task ends at once.
        writer.run().await.unwrap();
    }

    #[tokio::test]
    async fn sends_after_close_fail_and_the_writer_task_ends() {
        let (w, _r) = tokio::io::duplex(1024);
        let writer = FrameWriter::new(Box::new(w));
        writer.close("connection ended");
        assert_eq!(
            writer.send(frame(1, 0, 1)).await.unwrap_err(),
            "connection ended"
        );
        writer.run().await.unwrap();
    }

    /// A sender waiting for room in a full queue is woken by the close.
    #[tokio::test]
    async fn a_sender_waiting_for_room_fails_when_the_writer_closes() {
        let (w, _r) = tokio::io::duplex(8);
        let writer = Arc::new(FrameWriter::with_limit(Box::new(w), 4));
        // No writer task runs: the first frame fills the pipe, the rest
        // queue until the queue is full.
        for seq in 0..4 {
            writer.send(frame(1, seq, 10)).await.unwrap();
        }
        let blocked = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move { writer.send(frame(1, 9999, 10)).await }
        });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        writer.close("stopped");
        assert_eq!(blocked.await.unwrap().unwrap_err(), "stopped");
    }
}
