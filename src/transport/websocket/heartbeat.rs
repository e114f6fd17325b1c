//! A session's protocol pings and the deadline for their pong, as one
//! schedule served by one timer: a session polls its timers at every turn of
//! its loop, every delivery included, so it keeps one, not two.
//!
//! Each ping carries its number, and only a pong that echoes a ping still
//! unanswered (RFC 6455 5.5.3) proves that the peer reads: an unsolicited pong
//! costs a client nothing to send and would keep a stalled one alive.

use std::time::Duration;

use tokio::time::Instant;

/// When to ping next and, after an unanswered ping, when to give up.
#[derive(Debug)]
pub struct Heartbeat {
    every: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    /// Pings sent; the last one's number.
    sent: u64,
    /// The first ping of those unanswered (with a pong deadline running).
    unanswered: u64,
}

/// A ping's payload: its number.
pub type PingPayload = [u8; 8];

/// What is due when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Ping(PingPayload),
    /// A ping went unanswered for the pong timeout.
    NoPong,
    /// Nothing (the pong came after the timer was set for its deadline).
    Nothing,
}

impl Heartbeat {
    /// The first ping is due one interval after `now`.
    pub fn new(now: Instant, every: Duration, pong_timeout: Duration) -> Heartbeat {
        Heartbeat { every, pong_timeout, next_ping: now + every, pong_deadline: None, sent: 0, unanswered: 0 }
    }

    /// When the timer should fire next.
    pub fn due(&self) -> Instant {
        self.pong_deadline.map_or(self.next_ping, |deadline| deadline.min(self.next_ping))
    }

    /// What is due at `now`. A ping starts the pong deadline unless one runs
    /// already (a later ping does not extend it); a ping an interval late or
    /// more moves the schedule on from `now`.
    pub fn fire(&mut self, now: Instant) -> Beat {
        if self.pong_deadline.is_some_and(|deadline| deadline <= now) {
            return Beat::NoPong;
        }
        if self.next_ping > now {
            return Beat::Nothing;
        }
        self.sent += 1;
        if self.pong_deadline.is_none() {
            self.pong_deadline = Some(now + self.pong_timeout);
            self.unanswered = self.sent;
        }
        self.next_ping += self.every;
        if self.next_ping <= now {
            self.next_ping = now + self.every;
        }
        Beat::Ping(self.sent.to_be_bytes())
    }

    /// A pong with `payload`: it answers if it echoes an unanswered ping (a
    /// peer may answer only the latest of several, RFC 6455 5.5.3).
    pub fn pong(&mut self, payload: &[u8]) {
        let Ok(number) = PingPayload::try_from(payload).map(u64::from_be_bytes) else { return };
        if self.pong_deadline.is_some() && (self.unanswered..=self.sent).contains(&number) {
            self.pong_deadline = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn pings_on_schedule_and_gives_up_on_the_first_unanswered_ping() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 15 * S);
        assert_eq!(h.due(), start + 10 * S);
        assert_eq!(h.fire(start + 10 * S), Beat::Ping(1u64.to_be_bytes()));
        assert_eq!(h.due(), start + 20 * S);
        assert_eq!(h.fire(start + 20 * S), Beat::Ping(2u64.to_be_bytes()));
        assert_eq!(h.due(), start + 25 * S, "the first ping's deadline, not extended");
        assert_eq!(h.fire(start + 25 * S), Beat::NoPong);
    }

    #[test]
    fn a_pong_clears_the_deadline_and_an_early_fire_does_nothing() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 5 * S);
        let Beat::Ping(payload) = h.fire(start + 10 * S) else { panic!("a ping is due") };
        assert_eq!(h.due(), start + 15 * S);
        h.pong(&payload);
        assert_eq!(h.fire(start + 15 * S), Beat::Nothing, "the timer was set for the old deadline");
        assert_eq!(h.due(), start + 20 * S);
    }

    #[test]
    fn a_late_ping_moves_the_schedule_on() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 5 * S);
        let Beat::Ping(payload) = h.fire(start + 33 * S) else { panic!("a ping is due") };
        assert_eq!(h.due(), start + 38 * S, "the pong deadline");
        h.pong(&payload);
        assert_eq!(h.due(), start + 43 * S, "one interval after the late ping");
    }

    #[test]
    fn only_a_pong_echoing_an_unanswered_ping_answers() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 5 * S);
        h.pong(&1u64.to_be_bytes());
        assert_eq!(h.fire(start + 10 * S), Beat::Ping(1u64.to_be_bytes()), "an early pong answered nothing");
        for foreign in [&b""[..], b"1", &0u64.to_be_bytes(), &2u64.to_be_bytes()] {
            h.pong(foreign);
            assert_eq!(h.due(), start + 15 * S, "{foreign:?} is no answer: the deadline stands");
        }
        h.pong(&1u64.to_be_bytes());
        assert_eq!(h.due(), start + 20 * S, "the echo answers");
    }

    #[test]
    fn a_pong_to_the_latest_of_several_pings_answers_them_all() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 15 * S);
        assert_eq!(h.fire(start + 10 * S), Beat::Ping(1u64.to_be_bytes()));
        assert_eq!(h.fire(start + 20 * S), Beat::Ping(2u64.to_be_bytes()));
        assert_eq!(h.due(), start + 25 * S);
        h.pong(&2u64.to_be_bytes());
        assert_eq!(h.due(), start + 30 * S, "no deadline left");
    }
}
