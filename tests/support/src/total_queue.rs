//! A total-queue checker, after Jepsen's: a test records what it tried to
//! publish, what the broker said about each publish, and what it received;
//! [`Ledger::check`] then tells whether a message the broker confirmed was
//! lost, whether anything arrived that nobody sent, and how many messages
//! arrived twice.
//!
//! Messages are told apart by an id the test gives each one (a counter,
//! carried in the body or a header), recorded with each event:
//!
//! ```
//! use pika_test_support::Ledger;
//! let ledger = Ledger::new();
//! ledger.published(1);
//! ledger.confirmed(1);
//! ledger.published(2);
//! ledger.indeterminate(2); // the connection died before the confirm
//! ledger.delivered(1);
//! let report = ledger.check();
//! report.assert_safe(); // nothing confirmed was lost, nothing unexpected came
//! assert_eq!(report.indeterminate, 1);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many ids of each list [`Report`]'s `Display` prints.
const IDS_SHOWN: usize = 20;

/// What a test tried to publish and what it received, per message id:
/// thread-safe, and cheap to clone (clones share one record), so that
/// publishers and consumers on different tasks write to the same ledger.
///
/// Each publish attempt is recorded with [`published`](Self::published),
/// then its outcome with one of [`confirmed`](Self::confirmed),
/// [`nacked`](Self::nacked), [`indeterminate`](Self::indeterminate) or
/// [`failed`](Self::failed); each delivery with
/// [`delivered`](Self::delivered). An id may be published more than once
/// (a retry after an indeterminate outcome); an outcome recorded for an id
/// never published counts as a publish of it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

/// What happened to one id.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    attempts: u64,
    confirmed: u64,
    nacked: u64,
    indeterminate: u64,
    failed: u64,
    deliveries: u64,
}

/// What a message's publishes came to, all attempts together: the first
/// that applies of confirmed, indeterminate (it may have reached the
/// broker), nacked, failed, and none recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Confirmed,
    Indeterminate,
    Nacked,
    Failed,
    Pending,
}

impl Entry {
    fn was_published(&self) -> bool {
        self.attempts + self.confirmed + self.nacked + self.indeterminate + self.failed > 0
    }

    fn outcome(&self) -> Outcome {
        if self.confirmed > 0 {
            Outcome::Confirmed
        } else if self.indeterminate > 0 {
            Outcome::Indeterminate
        } else if self.nacked > 0 {
            Outcome::Nacked
        } else if self.failed > 0 {
            Outcome::Failed
        } else {
            Outcome::Pending
        }
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn record(&self, id: u64, event: impl FnOnce(&mut Entry)) {
        event(self.lock().entry(id).or_default());
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic elsewhere cannot leave an entry half-updated.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an attempt to publish message `id` (before sending it).
    pub fn published(&self, id: u64) {
        self.record(id, |e| e.attempts += 1);
    }

    /// Records that the broker confirmed (acked) a publish of `id`: it
    /// must be delivered.
    pub fn confirmed(&self, id: u64) {
        self.record(id, |e| e.confirmed += 1);
    }

    /// Records that the broker nacked a publish of `id`: it took no
    /// responsibility for it (it may still be delivered).
    pub fn nacked(&self, id: u64) {
        self.record(id, |e| e.nacked += 1);
    }

    /// Records that a publish of `id` has no known outcome: it may have
    /// reached the broker (a timeout, or the connection died before the
    /// confirm).
    pub fn indeterminate(&self, id: u64) {
        self.record(id, |e| e.indeterminate += 1);
    }

    /// Records that a publish of `id` definitely never left the client
    /// (refused before anything was written): it must not be delivered,
    /// unless another attempt of the same id went out.
    pub fn failed(&self, id: u64) {
        self.record(id, |e| e.failed += 1);
    }

    /// Records that message `id` was delivered to a consumer (once per
    /// delivery: a redelivery is recorded again).
    pub fn delivered(&self, id: u64) {
        self.record(id, |e| e.deliveries += 1);
    }

    /// How many confirmed ids have not been delivered yet: a consumer
    /// can wait for this to reach 0 before [`check`](Self::check).
    pub fn confirmed_undelivered(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| e.confirmed > 0 && e.deliveries == 0)
            .count()
    }

    /// Sums up the ledger as it is now.
    pub fn check(&self) -> Report {
        let entries = self.lock();
        let mut report = Report::default();
        for (&id, entry) in entries.iter() {
            report.publish_attempts += entry.attempts;
            report.deliveries += entry.deliveries;
            let delivered = entry.deliveries > 0;
            if delivered {
                report.delivered += 1;
            }
            if entry.deliveries > 1 {
                report.duplicated += 1;
                report.duplicate_deliveries += entry.deliveries - 1;
            }
            if !entry.was_published() {
                report.unexpected.push(id);
                continue;
            }
            report.published += 1;
            match entry.outcome() {
                Outcome::Confirmed => {
                    report.confirmed += 1;
                    if !delivered {
                        report.lost.push(id);
                    }
                }
                Outcome::Indeterminate => {
                    report.indeterminate += 1;
                    report.indeterminate_delivered += usize::from(delivered);
                }
                Outcome::Nacked => {
                    report.nacked += 1;
                    report.nacked_delivered += usize::from(delivered);
                }
                Outcome::Failed => {
                    report.failed += 1;
                    if delivered {
                        report.failed_delivered.push(id);
                    }
                }
                Outcome::Pending => {
                    report.pending += 1;
                    report.pending_delivered += usize::from(delivered);
                }
            }
        }
        report
    }
}

/// The sum of a [`Ledger`] ([`Ledger::check`]). Counts are of distinct
/// message ids unless they say attempts or deliveries. Each published id
/// is in exactly one of `confirmed`, `indeterminate`, `nacked`, `failed`
/// and `pending`, by what its attempts came to: confirmed if any attempt
/// was, else indeterminate if any was, else nacked, else failed.
///
/// The safety properties ([`assert_safe`](Self::assert_safe)): nothing
/// confirmed is lost, nothing is delivered that was never published, and
/// nothing that definitely failed is delivered. Duplicates are allowed
/// (at-least-once) but counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Publish attempts recorded with [`Ledger::published`].
    pub publish_attempts: u64,
    /// Ids published (recorded with [`Ledger::published`] or an outcome).
    pub published: usize,
    /// Published ids that the broker confirmed.
    pub confirmed: usize,
    /// Published ids with no confirm, some attempt of which had no known
    /// outcome.
    pub indeterminate: usize,
    /// Of those, the ids delivered (they reached the broker after all).
    pub indeterminate_delivered: usize,
    /// Published ids that the broker nacked (and never confirmed).
    pub nacked: usize,
    /// Of those, the ids delivered anyway.
    pub nacked_delivered: usize,
    /// Published ids all of whose attempts definitely failed.
    pub failed: usize,
    /// Published ids with no outcome recorded (the test lost track, or
    /// checked before the publishes settled).
    pub pending: usize,
    /// Of those, the ids delivered.
    pub pending_delivered: usize,
    /// Distinct ids delivered.
    pub delivered: usize,
    /// Deliveries, all ids together.
    pub deliveries: u64,
    /// Ids delivered more than once.
    pub duplicated: usize,
    /// Deliveries beyond the first of each id.
    pub duplicate_deliveries: u64,
    /// Confirmed ids never delivered, in order: a safety violation.
    pub lost: Vec<u64>,
    /// Ids delivered that were never published, in order: a safety
    /// violation.
    pub unexpected: Vec<u64>,
    /// Ids whose publishes all definitely failed and that were delivered
    /// anyway (the client said "not sent" about a message that went out),
    /// in order: a safety violation.
    pub failed_delivered: Vec<u64>,
}

impl Report {
    /// True when the safety properties hold: nothing lost, nothing
    /// unexpected, nothing delivered that definitely failed.
    pub fn is_safe(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty() && self.failed_delivered.is_empty()
    }

    /// Panics, with the whole report in the message, unless
    /// [`is_safe`](Self::is_safe).
    ///
    /// # Panics
    /// When a confirmed message was lost, an unpublished one delivered, or
    /// a definitely failed one delivered.
    #[track_caller]
    pub fn assert_safe(&self) {
        assert!(self.is_safe(), "the total-queue checks failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published      {:>7} ids ({} attempts)",
            self.published, self.publish_attempts
        )?;
        writeln!(f, "confirmed      {:>7}", self.confirmed)?;
        writeln!(
            f,
            "indeterminate  {:>7} ({} delivered)",
            self.indeterminate, self.indeterminate_delivered
        )?;
        writeln!(
            f,
            "nacked         {:>7} ({} delivered)",
            self.nacked, self.nacked_delivered
        )?;
        writeln!(
            f,
            "failed         {:>7} ({} delivered)",
            self.failed,
            self.failed_delivered.len()
        )?;
        writeln!(
            f,
            "no outcome     {:>7} ({} delivered)",
            self.pending, self.pending_delivered
        )?;
        writeln!(
            f,
            "delivered      {:>7} ids ({} deliveries)",
            self.delivered, self.deliveries
        )?;
        writeln!(
            f,
            "duplicated     {:>7} ids ({} extra deliveries)",
            self.duplicated, self.duplicate_deliveries
        )?;
        write_ids(f, "LOST", "confirmed, never delivered", &self.lost)?;
        write_ids(
            f,
            "UNEXPECTED",
            "delivered, never published",
            &self.unexpected,
        )?;
        write_ids(
            f,
            "FAILED BUT DELIVERED",
            "said not sent, delivered",
            &self.failed_delivered,
        )?;
        write!(f, "{}", if self.is_safe() { "safe" } else { "UNSAFE" })
    }
}

/// One line of a safety violation: the count and the first ids, or `0`.
fn write_ids(f: &mut fmt::Formatter<'_>, what: &str, meaning: &str, ids: &[u64]) -> fmt::Result {
    let label = if ids.is_empty() {
        what.to_lowercase()
    } else {
        what.to_string()
    };
    write!(f, "{:<15}{:>7}", label, ids.len())?;
    if !ids.is_empty() {
        let shown: Vec<String> = ids.iter().take(IDS_SHOWN).map(u64::to_string).collect();
        let more = if ids.len() > IDS_SHOWN { ", ..." } else { "" };
        write!(f, " ({meaning}: {}{more})", shown.join(", "))?;
    }
    writeln!(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_ledger_is_safe() {
        let report = Ledger::new().check();
        assert_eq!(report, Report::default());
        report.assert_safe();
    }

    #[test]
    fn confirmed_and_delivered_is_safe() {
        let ledger = Ledger::new();
        for id in 0..10 {
            ledger.published(id);
            ledger.confirmed(id);
            ledger.delivered(id);
        }
        let report = ledger.check();
        assert_eq!(report.published, 10);
        assert_eq!(report.publish_attempts, 10);
        assert_eq!(report.confirmed, 10);
        assert_eq!(report.delivered, 10);
        assert_eq!(report.deliveries, 10);
        assert_eq!(ledger.confirmed_undelivered(), 0);
        report.assert_safe();
    }

    #[test]
    fn confirmed_but_never_delivered_is_lost() {
        let ledger = Ledger::new();
        for id in 0..3 {
            ledger.published(id);
            ledger.confirmed(id);
        }
        ledger.delivered(1);
        assert_eq!(ledger.confirmed_undelivered(), 2);
        let report = ledger.check();
        assert_eq!(report.lost, [0, 2]);
        assert!(!report.is_safe());
    }

    #[test]
    fn delivered_but_never_published_is_unexpected() {
        let ledger = Ledger::new();
        ledger.published(1);
        ledger.confirmed(1);
        ledger.delivered(1);
        ledger.delivered(7);
        let report = ledger.check();
        assert_eq!(report.unexpected, [7]);
        assert_eq!(report.published, 1);
        assert_eq!(report.delivered, 2);
        assert!(!report.is_safe());
    }

    #[test]
    fn duplicates_are_counted_not_unsafe() {
        let ledger = Ledger::new();
        for id in 0..3 {
            ledger.published(id);
            ledger.confirmed(id);
            ledger.delivered(id);
        }
        ledger.delivered(0);
        ledger.delivered(0);
        ledger.delivered(2);
        let report = ledger.check();
        assert_eq!(report.duplicated, 2);
        assert_eq!(report.duplicate_deliveries, 3);
        assert_eq!(report.delivered, 3);
        assert_eq!(report.deliveries, 6);
        report.assert_safe();
    }

    #[test]
    fn indeterminate_may_or_may_not_arrive() {
        let ledger = Ledger::new();
        for id in 0..4 {
            ledger.published(id);
            ledger.indeterminate(id);
        }
        ledger.delivered(0);
        ledger.delivered(3);
        let report = ledger.check();
        assert_eq!(report.indeterminate, 4);
        assert_eq!(report.indeterminate_delivered, 2);
        assert_eq!(report.confirmed, 0);
        report.assert_safe();
    }

    #[test]
    fn a_retry_that_is_confirmed_counts_as_confirmed() {
        let ledger = Ledger::new();
        ledger.published(5);
        ledger.indeterminate(5);
        ledger.published(5);
        ledger.confirmed(5);
        let report = ledger.check();
        assert_eq!(report.publish_attempts, 2);
        assert_eq!(report.published, 1);
        assert_eq!(report.confirmed, 1);
        assert_eq!(report.indeterminate, 0);
        assert_eq!(report.lost, [5]);
    }

    #[test]
    fn nacked_may_be_delivered() {
        let ledger = Ledger::new();
        ledger.published(1);
        ledger.nacked(1);
        ledger.published(2);
        ledger.nacked(2);
        ledger.delivered(2);
        let report = ledger.check();
        assert_eq!(report.nacked, 2);
        assert_eq!(report.nacked_delivered, 1);
        report.assert_safe();
    }

    #[test]
    fn failed_and_delivered_is_unsafe() {
        let ledger = Ledger::new();
        ledger.published(1);
        ledger.failed(1);
        ledger.published(2);
        ledger.failed(2);
        ledger.delivered(2);
        let report = ledger.check();
        assert_eq!(report.failed, 2);
        assert_eq!(report.failed_delivered, [2]);
        assert!(!report.is_safe());
    }

    #[test]
    fn a_failed_attempt_then_an_indeterminate_one_may_arrive() {
        let ledger = Ledger::new();
        ledger.published(1);
        ledger.failed(1);
        ledger.published(1);
        ledger.indeterminate(1);
        ledger.delivered(1);
        let report = ledger.check();
        assert_eq!(report.indeterminate, 1);
        assert_eq!(report.failed, 0);
        report.assert_safe();
    }

    #[test]
    fn publishes_without_an_outcome_are_pending() {
        let ledger = Ledger::new();
        ledger.published(1);
        ledger.published(2);
        ledger.delivered(2);
        let report = ledger.check();
        assert_eq!(report.pending, 2);
        assert_eq!(report.pending_delivered, 1);
        report.assert_safe();
    }

    #[test]
    fn an_outcome_alone_counts_as_a_publish() {
        let ledger = Ledger::new();
        ledger.confirmed(1);
        ledger.delivered(1);
        let report = ledger.check();
        assert_eq!(report.published, 1);
        assert_eq!(report.publish_attempts, 0);
        assert!(report.unexpected.is_empty());
        report.assert_safe();
    }

    #[test]
    fn clones_share_the_record_across_threads() {
        let ledger = Ledger::new();
        let publisher = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for id in 0..1000 {
                    ledger.published(id);
                    ledger.confirmed(id);
                }
            })
        };
        let consumer = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for id in 0..1000 {
                    ledger.delivered(id);
                }
            })
        };
        publisher.join().unwrap();
        consumer.join().unwrap();
        let report = ledger.check();
        assert_eq!((report.confirmed, report.delivered), (1000, 1000));
        report.assert_safe();
    }

    #[test]
    fn the_report_reads_as_one_block() {
        let ledger = Ledger::new();
        for id in 0..30 {
            ledger.published(id);
            ledger.confirmed(id);
        }
        ledger.delivered(0);
        ledger.delivered(0);
        ledger.delivered(99);
        let text = ledger.check().to_string();
        assert!(
            text.contains("published           30 ids (30 attempts)"),
            "{text}"
        );
        assert!(
            text.contains("duplicated           1 ids (1 extra deliveries)"),
            "{text}"
        );
        assert!(
            text.contains("LOST                29 (confirmed, never delivered: 1, 2, 3,"),
            "{text}"
        );
        assert!(text.contains(", 20, ...)"), "{text}");
        assert!(
            text.contains("UNEXPECTED           1 (delivered, never published: 99)"),
            "{text}"
        );
        assert!(
            text.contains("failed               0 (0 delivered)"),
            "{text}"
        );
        assert!(text.ends_with("UNSAFE"), "{text}");
    }

    #[test]
    #[should_panic(expected = "the total-queue checks failed")]
    fn assert_safe_panics_with_the_report() {
        let ledger = Ledger::new();
        ledger.confirmed(1);
        ledger.check().assert_safe();
    }
}
