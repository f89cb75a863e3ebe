//! Where the load goes: the exchange, the queues, and which producer
//! publishes to which queue and which consumer consumes which, as
//! RabbitMQ PerfTest spreads them.
//!
//! Producer `i` publishes to queue `i % queues` and consumer `j` consumes
//! queue `j % queues`. Each queue is bound to the exchange with its own
//! name as the binding key, and a producer publishes with its queue's name
//! as the routing key; `-k` replaces both, so every queue then gets every
//! message (as in PerfTest). The default exchange (`-e ""`) needs no
//! binding: the routing key is the queue's name.

/// The exchange, its type, the queues and the routing key of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The exchange producers publish to (`""`: the default exchange).
    pub exchange: String,
    /// Its type (`direct`, `fanout`, `topic`, `headers`, or a plugin's).
    pub exchange_type: String,
    /// The queues, at least one.
    pub queues: Vec<String>,
    /// The routing key and binding key of every queue (`None`: each
    /// queue's name).
    pub routing_key: Option<String>,
}

impl Topology {
    /// True when producers publish to the default exchange, which needs
    /// no declare and no binding.
    pub fn uses_default_exchange(&self) -> bool {
        self.exchange.is_empty()
    }

    /// The queue producer `index` publishes towards.
    pub fn producer_queue(&self, index: usize) -> &str {
        &self.queues[index % self.queues.len()]
    }

    /// The routing key producer `index` publishes with.
    pub fn producer_routing_key(&self, index: usize) -> &str {
        self.routing_key
            .as_deref()
            .unwrap_or_else(|| self.producer_queue(index))
    }

    /// The queue consumer `index` consumes.
    pub fn consumer_queue(&self, index: usize) -> &str {
        &self.queues[index % self.queues.len()]
    }

    /// The key `queue` is bound to the exchange with.
    pub fn binding_key<'a>(&'a self, queue: &'a str) -> &'a str {
        self.routing_key.as_deref().unwrap_or(queue)
    }

    /// Whether a message published with `routing_key` reaches `queue`,
    /// through the bindings this tool makes (topic wildcards and headers
    /// matching are not evaluated: a fanout or headers exchange reaches
    /// every queue, any other type the queues whose binding key equals
    /// the routing key).
    pub fn reaches(&self, routing_key: &str, queue: &str) -> bool {
        if self.uses_default_exchange() {
            return routing_key == queue;
        }
        match self.exchange_type.as_str() {
            "fanout" | "headers" => true,
            _ => self.binding_key(queue) == routing_key,
        }
    }

    /// How many deliveries the consumers should see when each of
    /// `producers` publishes `per_producer` messages: each message counts
    /// once for every queue it reaches that has a consumer (a queue with
    /// several consumers delivers each message to one of them).
    pub fn expected_deliveries(
        &self,
        producers: usize,
        consumers: usize,
        per_producer: u64,
    ) -> u64 {
        let consumed: Vec<&str> = self
            .queues
            .iter()
            .enumerate()
            .filter(|(index, _)| *index < consumers)
            .map(|(_, queue)| queue.as_str())
            .collect();
        (0..producers)
            .map(|producer| {
                let key = self.producer_routing_key(producer);
                let reached = consumed.iter().filter(|q| self.reaches(key, q)).count();
                per_producer * reached as u64
            })
            .sum()
    }
}

/// The queue names of PerfTest's `--queue-pattern`, `--queue-pattern-from`
/// and `--queue-pattern-to`: `pattern` with its `%d` (or a zero-padded
/// `%05d`, as Java's `String.format`) replaced by each number from `from`
/// to `to`, both included.
///
/// ```
/// use pika_perf::load::topology::expand_queue_pattern;
/// assert_eq!(
///     expand_queue_pattern("perf-test-%d", 1, 3).unwrap(),
///     ["perf-test-1", "perf-test-2", "perf-test-3"]
/// );
/// assert_eq!(expand_queue_pattern("q-%03d", 9, 10).unwrap(), ["q-009", "q-010"]);
/// ```
pub fn expand_queue_pattern(pattern: &str, from: u32, to: u32) -> Result<Vec<String>, String> {
    if from > to {
        return Err(format!(
            "--queue-pattern-from {from} is more than --queue-pattern-to {to}: give a range from low to high"
        ));
    }
    let (prefix, width, suffix) = split_pattern(pattern)?;
    Ok((from..=to)
        .map(|n| format!("{prefix}{n:0width$}{suffix}"))
        .collect())
}

/// Splits `pattern` around its one `%d` or `%0Nd`: the text before, the
/// zero-padded width (0: none), the text after. `%%` is a literal `%`.
fn split_pattern(pattern: &str) -> Result<(String, usize, String), String> {
    let no_placeholder = || {
        format!("--queue-pattern {pattern:?} has no %d: write where the number goes, e.g. 'perf-test-%d'")
    };
    let mut prefix = String::new();
    let mut chars = pattern.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            prefix.push(c);
            continue;
        }
        if chars.peek().map(|(_, c)| *c) == Some('%') {
            chars.next();
            prefix.push('%');
            continue;
        }
        let mut digits = String::new();
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            digits.push(d);
            chars.next();
        }
        match chars.next() {
            Some((at, 'd')) => {
                let width = digits.parse::<usize>().unwrap_or(0);
                let suffix = pattern[at + 1..].replace("%%", "%");
                if suffix.contains('%') {
                    return Err(format!(
                        "--queue-pattern {pattern:?} has more than one placeholder: use one %d"
                    ));
                }
                return Ok((prefix, width, suffix));
            }
            _ => return Err(no_placeholder()),
        }
    }
    Err(no_placeholder())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(exchange: &str, kind: &str, queues: &[&str], key: Option<&str>) -> Topology {
        Topology {
            exchange: exchange.into(),
            exchange_type: kind.into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            routing_key: key.map(String::from),
        }
    }

    #[test]
    fn patterns_expand_like_java_string_format() {
        assert_eq!(
            expand_queue_pattern("perf-test-%d", 1, 3).unwrap(),
            ["perf-test-1", "perf-test-2", "perf-test-3"]
        );
        assert_eq!(expand_queue_pattern("%d", 0, 0).unwrap(), ["0"]);
        assert_eq!(
            expand_queue_pattern("q-%04d-x", 7, 8).unwrap(),
            ["q-0007-x", "q-0008-x"]
        );
        assert_eq!(expand_queue_pattern("100%%-%d", 1, 1).unwrap(), ["100%-1"]);
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        let error = expand_queue_pattern("perf-test", 1, 2).unwrap_err();
        assert!(error.contains("has no %d"), "{error}");
        let error = expand_queue_pattern("perf-%s", 1, 2).unwrap_err();
        assert!(error.contains("has no %d"), "{error}");
        let error = expand_queue_pattern("a-%d-%d", 1, 2).unwrap_err();
        assert!(error.contains("more than one"), "{error}");
        let error = expand_queue_pattern("q-%d", 3, 2).unwrap_err();
        assert!(error.contains("from 3 is more than"), "{error}");
    }

    #[test]
    fn producers_and_consumers_go_round_robin_over_the_queues() {
        let t = topology("direct", "direct", &["q-1", "q-2", "q-3"], None);
        let producers: Vec<&str> = (0..4).map(|i| t.producer_queue(i)).collect();
        assert_eq!(producers, ["q-1", "q-2", "q-3", "q-1"]);
        assert_eq!(t.consumer_queue(4), "q-2");
        assert_eq!(t.producer_routing_key(1), "q-2");
        assert_eq!(t.binding_key("q-3"), "q-3");
    }

    #[test]
    fn a_routing_key_sends_every_message_to_every_queue() {
        let t = topology("direct", "direct", &["q-1", "q-2"], Some("rk"));
        assert_eq!(t.producer_routing_key(1), "rk");
        assert!(t.reaches("rk", "q-1") && t.reaches("rk", "q-2"));
        // 2 producers x 10 messages, each to both queues, both consumed.
        assert_eq!(t.expected_deliveries(2, 2, 10), 40);
        // Only q-1 has a consumer.
        assert_eq!(t.expected_deliveries(2, 1, 10), 20);
    }

    #[test]
    fn expected_deliveries_count_only_queues_with_consumers() {
        let t = topology("direct", "direct", &["q-1", "q-2", "q-3"], None);
        // Producers 0..3 publish to q-1, q-2, q-3; consumers only on q-1, q-2.
        assert_eq!(t.expected_deliveries(3, 2, 100), 200);
        // More consumers than queues: each queue counted once.
        assert_eq!(t.expected_deliveries(3, 6, 100), 300);
        let fanout = topology("logs", "fanout", &["a", "b"], None);
        assert_eq!(fanout.expected_deliveries(1, 2, 5), 10);
        let default = topology("", "direct", &["a", "b"], None);
        assert_eq!(default.expected_deliveries(2, 2, 5), 10);
        assert!(!default.reaches("a", "b"));
    }
}
