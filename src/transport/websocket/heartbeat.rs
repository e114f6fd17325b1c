//! A session's protocol pings and the deadline for their pong, as one
//! schedule served by one timer: a session polls its timers at every turn of
//! its loop, every delivery included, so it keeps one, not two.

use std::time::Duration;

use tokio::time::Instant;

/// When to ping next and, after an unanswered ping, when to give up.
#[derive(Debug)]
pub struct Heartbeat {
    every: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

/// What is due when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Ping,
    /// A ping went unanswered for the pong timeout.
    NoPong,
    /// Nothing (the pong came after the timer was set for its deadline).
    Nothing,
}

impl Heartbeat {
    /// The first ping is due one interval after `now`.
    pub fn new(now: Instant, every: Duration, pong_timeout: Duration) -> Heartbeat {
        Heartbeat { every, pong_timeout, next_ping: now + every, pong_deadline: None }
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
        self.pong_deadline.get_or_insert(now + self.pong_timeout);
        self.next_ping += self.every;
        if self.next_ping <= now {
            self.next_ping = now + self.every;
        }
        Beat::Ping
    }

    pub fn pong(&mut self) {
        self.pong_deadline = None;
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
        assert_eq!(h.fire(start + 10 * S), Beat::Ping);
        assert_eq!(h.due(), start + 20 * S);
        assert_eq!(h.fire(start + 20 * S), Beat::Ping);
        assert_eq!(h.due(), start + 25 * S, "the first ping's deadline, not extended");
        assert_eq!(h.fire(start + 25 * S), Beat::NoPong);
    }

    #[test]
    fn a_pong_clears_the_deadline_and_an_early_fire_does_nothing() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 5 * S);
        assert_eq!(h.fire(start + 10 * S), Beat::Ping);
        assert_eq!(h.due(), start + 15 * S);
        h.pong();
        assert_eq!(h.fire(start + 15 * S), Beat::Nothing, "the timer was set for the old deadline");
        assert_eq!(h.due(), start + 20 * S);
    }

    #[test]
    fn a_late_ping_moves_the_schedule_on() {
        let start = Instant::now();
        let mut h = Heartbeat::new(start, 10 * S, 5 * S);
        assert_eq!(h.fire(start + 33 * S), Beat::Ping);
        assert_eq!(h.due(), start + 38 * S, "the pong deadline");
        h.pong();
        assert_eq!(h.due(), start + 43 * S, "one interval after the late ping");
    }
}
