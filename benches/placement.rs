//! Placement benchmark: one full placement of 10,000 instances on 1,000 nodes (goal: under
//! 50 ms), plus how many instances move when one node is added. Run it with
//! `cargo bench --bench placement` (`-- --nodes N --instances M --rounds R` to change the sizes).

use std::time::{Duration, Instant};

use aether::deploy::placement::{Needs, NodeSlot, Options, place};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, found '{v}'"))
        })
        .unwrap_or(default)
}

fn main() {
    let (n_nodes, n_inst, rounds) = (
        arg("--nodes", 1000),
        arg("--instances", 10_000),
        arg("--rounds", 20),
    );
    // Mixed capacities (8 to 64 cores), some nodes draining, some GPU boxes.
    let nodes: Vec<NodeSlot> = (0..n_nodes)
        .map(|i| NodeSlot {
            id: i as u64 + 1,
            name: format!("n{}", i + 1),
            cpu: [8.0, 16.0, 32.0, 64.0][i % 4],
            memory: [32u64, 64, 128, 256][i % 4] << 30,
            gpus: if i % 10 == 0 { 8 } else { 0 },
            schedulable: if i % 50 == 7 {
                Err("is draining".into())
            } else {
                Ok(())
            },
            gpu_trouble: None,
            carbon: None,
        })
        .collect();
    let instances: Vec<(String, Needs)> = (0..n_inst)
        .map(|i| {
            (
                format!("app{}/slice{}/{}", i % 40, i % 7, i),
                Needs {
                    cpu: [0.25, 0.5, 1.0][i % 3],
                    memory: [128u64, 256, 512][i % 3] << 20,
                    gpu: u32::from(i % 100 == 0),
                },
            )
        })
        .collect();
    let opts = Options::default();
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    let mut p = place(&nodes, &instances, opts);
    for _ in 0..rounds {
        let t = Instant::now();
        p = place(&nodes, &instances, opts);
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "full placement of {n_inst} instances on {n_nodes} nodes: p50 {:.1} ms, max {:.1} ms over {rounds} rounds (goal < 50 ms); {} placed, {} pending",
        ms(times[times.len() / 2]),
        ms(*times.last().expect("rounds > 0")),
        p.assigned.len(),
        p.pending.len()
    );
    let mut more = nodes.clone();
    more.push(NodeSlot {
        id: n_nodes as u64 + 1,
        name: "new".into(),
        cpu: 32.0,
        memory: 128 << 30,
        gpus: 0,
        schedulable: Ok(()),
        gpu_trouble: None,
        carbon: None,
    });
    let q = place(&more, &instances, opts);
    let moved = p
        .assigned
        .iter()
        .filter(|(k, n)| q.assigned.get(*k) != Some(*n))
        .count();
    println!(
        "adding one node moves {moved} of {} placed instances ({:.2} %; its fair share is about {:.2} %)",
        p.assigned.len(),
        moved as f64 * 100.0 / p.assigned.len().max(1) as f64,
        100.0 * 32.0
            / more
                .iter()
                .filter(|n| n.schedulable.is_ok())
                .map(|n| n.cpu as f64)
                .sum::<f64>()
    );
}
