//! Many tasks at once, on a multi-threaded runtime.

use std::sync::Arc;

use bytes::Bytes;

use super::Outcome;
use super::scope::{Scope, join_tasks};
use crate::backend::{Backend, Expiry, SetOptions};

const TASKS: usize = 32;

/// How many tasks race, and how many operations each makes, in the
/// checks below (the defaults, or a lighter load for a test server that
/// serves one request at a time: see
/// [`Conformance::light_concurrency`](super::Conformance::light_concurrency)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) tasks: usize,
    /// Operations per task, as a fraction of the defaults: 1 is all.
    pub(crate) divisor: usize,
}

impl Load {
    pub(crate) const FULL: Load = Load {
        tasks: TASKS,
        divisor: 1,
    };
    pub(crate) const LIGHT: Load = Load {
        tasks: 8,
        divisor: 4,
    };
}

/// 32 tasks × 200 operations (set, get, get_many, delete) on the same 16
/// keys: no operation fails, and every read finds nothing or one of the
/// values written to that very key (no torn or misplaced values).
pub async fn concurrent_reads_and_writes(subject: &Arc<dyn Backend>) -> Outcome {
    concurrent_reads_and_writes_under(subject, Load::FULL).await
}

pub(crate) async fn concurrent_reads_and_writes_under(
    subject: &Arc<dyn Backend>,
    load: Load,
) -> Outcome {
    let (tasks_n, ops) = (load.tasks, 200 / load.divisor);
    const KEYS: usize = 16;
    let s = Arc::new(Scope::new(&**subject, "concurrent_reads_and_writes"));
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| s.key(&format!("k{i}"))).collect());
    let mut tasks = Vec::with_capacity(tasks_n);
    for task in 0..tasks_n {
        let (subject, keys, s) = (Arc::clone(subject), Arc::clone(&keys), Arc::clone(&s));
        tasks.push(tokio::spawn(async move {
            for op in 0..ops {
                let slot = (task * 7 + op) % KEYS;
                let key = keys[slot].as_str();
                match op % 5 {
                    0 | 1 => {
                        let value = Bytes::from(format!("{slot}:{task}:{op}"));
                        let written = s.ok(
                            subject.set(key, value, &SetOptions::new()).await,
                            "a concurrent set",
                        );
                        assert!(written, "{s}: a concurrent set must return true");
                    }
                    2 => {
                        let found = s.ok(subject.get(key).await, "a concurrent get");
                        check_written(&s, slot, found.as_ref());
                    }
                    3 => {
                        let next = (slot + 1) % KEYS;
                        let found = s.ok(
                            subject.get_many(&[key, keys[next].as_str()]).await,
                            "a concurrent get_many",
                        );
                        assert_eq!(found.len(), 2, "{s}: get_many of 2 keys must answer twice");
                        check_written(&s, slot, found[0].as_ref());
                        check_written(&s, next, found[1].as_ref());
                    }
                    _ if op % 25 == 4 => {
                        s.ok(subject.delete(key).await, "a concurrent delete");
                    }
                    _ => {
                        s.ok(subject.exists(key).await, "a concurrent exists");
                    }
                }
            }
        }));
    }
    join_tasks(&s, tasks).await;
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = s.ok(
        subject.get_many(&all).await,
        "get_many after the concurrent writes",
    );
    for (slot, value) in found.iter().enumerate() {
        check_written(&s, slot, value.as_ref());
    }
    s.cleanup(&**subject).await;
    Outcome::Passed
}

/// Checks that a value read from key `slot` is one that a task wrote there.
fn check_written(s: &Scope, slot: usize, found: Option<&Bytes>) {
    let Some(value) = found else { return };
    let parsed = std::str::from_utf8(value).ok().and_then(|text| {
        let mut parts = text.split(':').map(str::parse::<usize>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(key)), Some(Ok(task)), Some(Ok(op)), None) => Some((key, task, op)),
            _ => None,
        }
    });
    match parsed {
        Some((key, task, _)) if key == slot && task < TASKS => {}
        _ => panic!("{s}: key #{slot} holds {value:?}, which no task wrote to it"),
    }
}

/// 32 tasks × 100 `incr` of one counter end at exactly 3200, and the values
/// returned are exactly 1..=3200 (each increment saw its own result).
/// Skipped unless `atomic_incr`.
pub async fn concurrent_incr(subject: &Arc<dyn Backend>) -> Outcome {
    concurrent_incr_under(subject, Load::FULL).await
}

pub(crate) async fn concurrent_incr_under(subject: &Arc<dyn Backend>, load: Load) -> Outcome {
    let (tasks_n, incrs) = (load.tasks, 100 / load.divisor);
    if !subject.capabilities().atomic_incr {
        return Outcome::Skipped("atomic_incr is false");
    }
    let s = Arc::new(Scope::new(&**subject, "concurrent_incr"));
    let counter = Arc::new(s.key("counter"));
    let mut tasks = Vec::with_capacity(tasks_n);
    for _ in 0..tasks_n {
        let (subject, counter, s) = (Arc::clone(subject), Arc::clone(&counter), Arc::clone(&s));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(incrs);
            for _ in 0..incrs {
                seen.push(s.ok(
                    subject.incr(&counter, 1, Expiry::Default).await,
                    "a concurrent incr",
                ));
            }
            seen
        }));
    }
    let mut seen: Vec<i64> = join_tasks(&s, tasks).await.into_iter().flatten().collect();
    seen.sort_unstable();
    let total = (tasks_n * incrs) as i64;
    let expected: Vec<i64> = (1..=total).collect();
    assert!(
        seen == expected,
        "{s}: {tasks_n} tasks × {incrs} atomic incr must return each of 1..={total} exactly once"
    );
    assert_eq!(
        s.get(&**subject, &counter).await.as_deref(),
        Some(total.to_string().as_bytes()),
        "{s}: {tasks_n} tasks × {incrs} atomic incr must end at {total}"
    );
    s.cleanup(&**subject).await;
    Outcome::Passed
}

/// 32 tasks race to `set` the same missing key `if_absent`, on 8 keys:
/// exactly one wins each race and its value is the one stored. Skipped
/// unless `conditional_set`.
pub async fn concurrent_if_absent(subject: &Arc<dyn Backend>) -> Outcome {
    concurrent_if_absent_under(subject, Load::FULL).await
}

pub(crate) async fn concurrent_if_absent_under(subject: &Arc<dyn Backend>, load: Load) -> Outcome {
    let tasks_n = load.tasks;
    const RACES: usize = 8;
    if !subject.capabilities().conditional_set {
        return Outcome::Skipped("conditional_set is false");
    }
    let s = Arc::new(Scope::new(&**subject, "concurrent_if_absent"));
    let keys: Arc<Vec<String>> = Arc::new((0..RACES).map(|i| s.key(&format!("race{i}"))).collect());
    let mut tasks = Vec::with_capacity(tasks_n * RACES);
    for task in 0..tasks_n {
        for race in 0..RACES {
            let (subject, keys, s) = (Arc::clone(subject), Arc::clone(&keys), Arc::clone(&s));
            tasks.push(tokio::spawn(async move {
                let value = Bytes::from(format!("task{task}"));
                let won = s.ok(
                    subject
                        .set(&keys[race], value, &SetOptions::new().if_absent())
                        .await,
                    "a concurrent set if_absent",
                );
                (race, task, won)
            }));
        }
    }
    let results = join_tasks(&s, tasks).await;
    for (race, key) in keys.iter().enumerate() {
        let winners: Vec<usize> = results
            .iter()
            .filter(|(r, _, won)| *r == race && *won)
            .map(|(_, task, _)| *task)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{s}: exactly one of {tasks_n} racing set if_absent must win, winners: {winners:?}"
        );
        assert_eq!(
            s.get(&**subject, key).await,
            Some(Bytes::from(format!("task{}", winners[0]))),
            "{s}: the stored value must be the winner's"
        );
    }
    s.cleanup(&**subject).await;
    Outcome::Passed
}
