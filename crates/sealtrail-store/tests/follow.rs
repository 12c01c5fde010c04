//! The one driver of every cursor on the log: a consumer sees each durable event once, in
//! seq order, from where it resumes; a failed step is retried without loss; a consumer that
//! is not ready waits; the shutdown stops a follower whether it waits or reads.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestLog, event};
use proptest::prelude::*;
use sealtrail_core::EventFilter;
use sealtrail_store::LogReader;
use sealtrail_store::follow::{
    FollowTiming, LogConsumer, LogFollower, ReadPlan, Shutdown, Step, StepError,
};
use sealtrail_store::sqlite::SqliteReader;

/// Remembers every seq it was handed, and its persisted cursor.
#[derive(Clone, Default)]
struct Collector {
    seen: Arc<Mutex<Vec<u64>>>,
    saved: Arc<Mutex<u64>>,
    /// Steps to fail (with Retry) before succeeding.
    failures_left: Arc<Mutex<u32>>,
    page_events: usize,
    filter: EventFilter,
}

impl LogConsumer for Collector {
    fn name(&self) -> &str {
        "collector"
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        Ok(*self.saved.lock().unwrap())
    }

    fn plan(&self) -> ReadPlan {
        ReadPlan::Events {
            filter: Box::new(self.filter.clone()),
            max_events: self.page_events,
        }
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        {
            let mut failures = self.failures_left.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(StepError::Retry("the receiver is down".into()));
            }
        }
        let page = step.page.expect("the plan reads events");
        assert!(
            page.events
                .iter()
                .all(|e| e.seq > step.cursor && e.seq <= step.through),
            "a step holds only events after the cursor, up to the horizon"
        );
        self.seen
            .lock()
            .unwrap()
            .extend(page.events.iter().map(|e| e.seq));
        *self.saved.lock().unwrap() = page.scanned_through;
        Ok(page.scanned_through)
    }
}

fn fast() -> FollowTiming {
    FollowTiming {
        poll: Duration::from_millis(20),
        retry_after: Duration::from_millis(10),
    }
}

fn reader(log: &TestLog) -> Arc<dyn LogReader> {
    Arc::new(SqliteReader::open(log.path()).unwrap())
}

/// Waits (with a deadline) until `done` holds.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `consumer` on a follower of `log` in a runtime of its own; returns its shutdown
/// and the thread to join.
fn follow(log: &TestLog, consumer: Collector) -> (Shutdown, std::thread::JoinHandle<()>) {
    let shutdown = Shutdown::new();
    let follower = LogFollower::new(reader(log), log.handle().durable_size(), shutdown.clone())
        .with_timing(fast());
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(follower.run(consumer))
    });
    (shutdown, thread)
}

#[test]
fn every_durable_event_reaches_the_consumer_once_in_order() {
    let log = TestLog::new();
    log.append((0..40).map(event).collect());
    let consumer = Collector {
        page_events: 7,
        ..Collector::default()
    };
    let (shutdown, thread) = follow(&log, consumer.clone());
    // Some before it started, some while it follows.
    for batch in 0..10 {
        log.append((batch * 10..batch * 10 + 10).map(event).collect());
    }
    wait_for("140 events", || consumer.seen.lock().unwrap().len() >= 140);
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(
        *consumer.seen.lock().unwrap(),
        (1..=140).collect::<Vec<_>>()
    );
    assert_eq!(*consumer.saved.lock().unwrap(), 140);
}

#[test]
fn a_consumer_resumes_after_its_persisted_cursor() {
    let log = TestLog::new();
    log.append((0..30).map(event).collect());
    let consumer = Collector {
        page_events: 1000,
        saved: Arc::new(Mutex::new(25)),
        ..Collector::default()
    };
    let (shutdown, thread) = follow(&log, consumer.clone());
    wait_for("the last event", || *consumer.saved.lock().unwrap() == 30);
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(*consumer.seen.lock().unwrap(), vec![26, 27, 28, 29, 30]);
}

#[test]
fn failed_steps_are_retried_and_lose_nothing() {
    let log = TestLog::new();
    log.append((0..20).map(event).collect());
    let consumer = Collector {
        page_events: 6,
        failures_left: Arc::new(Mutex::new(3)),
        ..Collector::default()
    };
    let (shutdown, thread) = follow(&log, consumer.clone());
    wait_for("20 events", || consumer.seen.lock().unwrap().len() >= 20);
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(*consumer.seen.lock().unwrap(), (1..=20).collect::<Vec<_>>());
}

#[test]
fn a_filtered_consumer_still_moves_past_what_it_skips() {
    let log = TestLog::new();
    log.append((0..30).map(event).collect());
    let only = log
        .reader
        .events_after(0, 30, &EventFilter::default(), 30)
        .unwrap();
    let tenant = only.events[0].tenant_id.clone();
    let wanted: Vec<u64> = only
        .events
        .iter()
        .filter(|e| e.tenant_id == tenant)
        .map(|e| e.seq)
        .collect();
    let consumer = Collector {
        page_events: 4,
        filter: EventFilter {
            tenant_id: Some(tenant),
            ..EventFilter::default()
        },
        ..Collector::default()
    };
    let (shutdown, thread) = follow(&log, consumer.clone());
    wait_for("the end of the log", || {
        *consumer.saved.lock().unwrap() == 30
    });
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(*consumer.seen.lock().unwrap(), wanted);
}

#[test]
fn the_shutdown_stops_a_waiting_follower_promptly() {
    let log = TestLog::new();
    let consumer = Collector {
        page_events: 10,
        ..Collector::default()
    };
    let shutdown = Shutdown::new();
    // A poll far longer than the test: only the shutdown can end the wait.
    let follower = LogFollower::new(reader(&log), log.handle().durable_size(), shutdown.clone())
        .with_timing(FollowTiming {
            poll: Duration::from_secs(3600),
            retry_after: Duration::from_secs(3600),
        });
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(follower.run(consumer))
    });
    std::thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    shutdown.cancel();
    thread.join().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2));
}

/// Says "not yet" a number of times before each step it takes (like the indexer waiting
/// for a batch to fill).
struct Hesitant {
    inner: Collector,
    not_yet: u32,
    asked: Arc<Mutex<u32>>,
}

impl LogConsumer for Hesitant {
    fn name(&self) -> &str {
        "hesitant"
    }

    async fn start(&mut self, through: u64) -> Result<u64, StepError> {
        self.inner.start(through).await
    }

    fn plan(&self) -> ReadPlan {
        self.inner.plan()
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let asked = {
            let mut asked = self.asked.lock().unwrap();
            *asked += 1;
            *asked
        };
        if asked % (self.not_yet + 1) != 0 {
            return Ok(step.cursor);
        }
        self.inner.step(step).await
    }
}

#[test]
fn a_consumer_that_is_not_ready_is_asked_again_at_the_poll() {
    let log = TestLog::new();
    log.append((0..12).map(event).collect());
    let collector = Collector {
        page_events: 5,
        ..Collector::default()
    };
    let consumer = Hesitant {
        inner: collector.clone(),
        not_yet: 2,
        asked: Arc::default(),
    };
    let asked = consumer.asked.clone();
    let shutdown = Shutdown::new();
    let follower = LogFollower::new(reader(&log), log.handle().durable_size(), shutdown.clone())
        .with_timing(fast());
    let started = Instant::now();
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(follower.run(consumer))
    });
    wait_for("12 events", || collector.seen.lock().unwrap().len() >= 12);
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(
        *collector.seen.lock().unwrap(),
        (1..=12).collect::<Vec<_>>()
    );
    // Three steps of 5, 5, 2 with two refusals before each: nine asks, the refusals each
    // waiting for the poll rather than spinning.
    assert_eq!(*asked.lock().unwrap(), 9);
    assert!(started.elapsed() >= Duration::from_millis(6 * 20));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the batches, page sizes and resume point, the consumer sees exactly the
    /// events after its cursor, each once, ascending.
    #[test]
    fn a_consumer_sees_exactly_the_events_after_its_cursor(
        batches in proptest::collection::vec(1u64..30, 1..6),
        page_events in 1usize..40,
        resume_fraction in 0.0f64..1.0,
    ) {
        let log = TestLog::new();
        let mut n = 0;
        for size in &batches {
            log.append((n..n + size).map(event).collect());
            n += size;
        }
        let resume = ((n as f64) * resume_fraction) as u64;
        let consumer = Collector {
            page_events,
            saved: Arc::new(Mutex::new(resume)),
            ..Collector::default()
        };
        let (shutdown, thread) = follow(&log, consumer.clone());
        wait_for("the end of the log", || *consumer.saved.lock().unwrap() == n);
        shutdown.cancel();
        thread.join().unwrap();
        prop_assert_eq!(
            consumer.seen.lock().unwrap().clone(),
            (resume + 1..=n).collect::<Vec<_>>()
        );
    }
}
