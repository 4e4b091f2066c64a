//! Bounded exhaustive model check: breadth-first over every interleaving
//! of host requests, opens and closes, reads, right and wrong answers and
//! timer expiries, to a fixed depth, with states deduplicated up to time
//! shifts and msgid values. Every state is checked by `World::step`:
//! - every answerable host request gets exactly one reply, no later than
//!   its arrival + timeout + rollback timeout, and malformed or
//!   engine-answered requests at once; a runt packet gets none;
//! - no failure reply leaves a party frozen without a THAW queued for it,
//!   and no THAW is answered OK with a party still frozen;
//! - while a request is pending a timer is armed, within its reply bound,
//!   and each firing answers or moves the deadline forward;
//! - a second open is refused; answers are accepted iff they match what
//!   the engine handed out.

// Tests: a panic is a failed test, and byte patterns are truncated on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::too_many_lines
)]

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::world::{Coverage, HostSend, Step, World};
use hv_vss_kmod::{Config, Device};
use hv_vss_proto::{DeviceStatus, HostOperation};

/// Depth limit of the search (events per interleaving). The reachable
/// state space is exhausted well before it; the test asserts at least 10.
const DEPTH: usize = 60;

fn alphabet() -> Vec<Step> {
    let mut steps = vec![
        Step::Host(HostSend::Chain(HostOperation::HotBackup, 0)),
        Step::Host(HostSend::Chain(HostOperation::Freeze, 8)),
        Step::Host(HostSend::Chain(HostOperation::Thaw, 0)),
        Step::Host(HostSend::Other),
        Step::Host(HostSend::Truncated),
        Step::Host(HostSend::Runt),
        Step::Tick,
        Step::Wait(30),
    ];
    for device in Device::ALL {
        steps.extend([
            Step::Open(device),
            Step::Close(device),
            Step::Read(device),
            Step::Answer(device, DeviceStatus::Success),
            Step::Answer(device, DeviceStatus::Fail),
            Step::AnswerWrongMsgid(device),
            Step::AnswerWrongOperation(device),
        ]);
    }
    steps
}

/// Timings explored: the deadline and rollback window against the fixed
/// 30-unit wait step, so that failures land early, late and exactly on a
/// deadline, and rollback windows end before, on and after a wait.
const CONFIGS: [Config; 3] = [
    Config {
        timeout_ms: 100,
        rollback_timeout_ms: 40,
    },
    Config {
        timeout_ms: 60,
        rollback_timeout_ms: 60,
    },
    Config {
        timeout_ms: 90,
        rollback_timeout_ms: 100,
    },
];

#[test]
fn every_interleaving_answers_each_request_once_in_time_and_leaves_nothing_frozen() {
    let mut total = 0;
    let mut coverage = Coverage::default();
    for config in CONFIGS {
        total += explore(config, &mut coverage);
    }
    println!(
        "model check: {total} distinct states explored over {} timing configurations",
        CONFIGS.len()
    );
    println!("coverage: {coverage:?}");
    // The search must have reached the situations the invariants are about.
    assert!(coverage.ok_replies > 0, "never completed a request");
    assert!(
        coverage.failure_replies_after_rollback > 0,
        "never answered failure during a rollback"
    );
    assert!(coverage.rejected_answers > 0, "never rejected an answer");
    assert!(
        coverage.busy_refusals > 0,
        "never refused a concurrent request"
    );
    assert!(
        coverage.rollback_timeouts > 0,
        "never closed a rollback window"
    );
}

/// Breadth-first search from the initial state; returns the number of
/// distinct states. Panics with the trace on the first broken invariant.
fn explore(config: Config, coverage: &mut Coverage) -> usize {
    let started = Instant::now();
    let alphabet = alphabet();
    let initial = World::<64>::new(config);
    let mut seen = HashSet::new();
    seen.insert(initial.key());
    let mut frontier = vec![(initial, Vec::new())];
    let mut transitions = 0u64;
    let mut reached = 0;
    for depth in 1..=DEPTH {
        let mut next = Vec::new();
        for (world, trace) in &frontier {
            for &step in &alphabet {
                if !world.enabled(step) {
                    continue;
                }
                transitions += 1;
                let mut successor = world.clone();
                if let Err(violation) = successor.step(step, coverage) {
                    panic!(
                        "{config:?}: invariant broken at depth {depth}: {violation}\ntrace: {:?}",
                        [trace.as_slice(), &[step]].concat()
                    );
                }
                if seen.insert(successor.key()) {
                    let mut trace: Vec<Step> = trace.clone();
                    trace.push(step);
                    next.push((successor, trace));
                }
            }
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
        reached = depth;
    }
    let exhausted = frontier.is_empty();
    println!(
        "{config:?}: {} distinct states, {transitions} transitions, depth {reached}{}, {:.1} s",
        seen.len(),
        if exhausted {
            " (every reachable state)"
        } else {
            " (depth limit)"
        },
        started.elapsed().as_secs_f64()
    );
    assert!(reached >= 10, "search stopped at depth {reached}");
    seen.len()
}

/// Depth of the unabstracted cross-check.
const CONCRETE_DEPTH: usize = 12;

#[test]
fn unabstracted_search_to_depth_12_finds_no_violation_either() {
    // Same search, but states merge only when identical in every time,
    // msgid and xid: if the abstraction in `World::key` merged states that
    // behave differently, a violation reachable within this depth would
    // show up here.
    let config = CONFIGS[0];
    let alphabet = alphabet();
    let mut coverage = Coverage::default();
    let initial = World::<64>::new(config);
    let mut seen = HashSet::new();
    seen.insert(initial.concrete_key());
    let mut frontier = vec![(initial, Vec::new())];
    for depth in 1..=CONCRETE_DEPTH {
        let mut next = Vec::new();
        for (world, trace) in &frontier {
            for &step in &alphabet {
                if !world.enabled(step) {
                    continue;
                }
                let mut successor = world.clone();
                if let Err(violation) = successor.step(step, &mut coverage) {
                    panic!(
                        "invariant broken at depth {depth}: {violation}\ntrace: {:?}",
                        [trace.as_slice(), &[step]].concat()
                    );
                }
                if seen.insert(successor.concrete_key()) {
                    let mut trace: Vec<Step> = trace.clone();
                    trace.push(step);
                    next.push((successor, trace));
                }
            }
        }
        frontier = next;
    }
    println!(
        "unabstracted check: {} distinct concrete states to depth {CONCRETE_DEPTH}",
        seen.len()
    );
}
