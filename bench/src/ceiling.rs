//! `bench argon2`: the login ceiling of this machine, cores / the time of
//! one argon2id hash at the server's cost (issue 10's definition), and the
//! rate all cores reach hashing side by side, for comparison.

use std::time::Instant;

use anyhow::{Result, anyhow};
use argon2::{Algorithm, Argon2, Block, Params, Version};

pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Hashes `n` times into one reused memory block (as the server's hashing
/// threads do); returns seconds per hash.
fn time_hashes(params: &Params, n: u32) -> Result<f64> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = vec![Block::new(); params.block_count()];
    let mut out = [0u8; 32];
    // One untimed hash: page faults of the first touch are not a hash's cost.
    argon2
        .hash_password_into_with_memory(b"warm-up", b"bench-salt-0123", &mut out, &mut memory[..])
        .map_err(|e| anyhow!("argon2: {e}"))?;
    let start = Instant::now();
    for i in 0..n {
        argon2
            .hash_password_into_with_memory(
                format!("password {i}").as_bytes(),
                b"bench-salt-0123",
                &mut out,
                &mut memory[..],
            )
            .map_err(|e| anyhow!("argon2: {e}"))?;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(n.max(1)))
}

pub fn run(cost: &Cost, hashes: u32) -> Result<()> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = time_hashes(&params, hashes)?;
    let ceiling = cores as f64 / one;
    let start = Instant::now();
    let per_thread: Vec<Result<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|_| s.spawn(|| time_hashes(&params, hashes)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("hashing thread panicked")))
            })
            .collect()
    });
    for r in per_thread {
        r?;
    }
    let together = f64::from(hashes) * cores as f64 / start.elapsed().as_secs_f64();
    println!(
        "argon2id        m={} KiB t={} p={}",
        cost.memory_kib, cost.iterations, cost.parallelism
    );
    println!(
        "one hash        {:.2} ms (mean of {hashes}, one thread)",
        one * 1000.0
    );
    println!("cores           {cores}");
    println!("ceiling         {ceiling:.1} hashes/s (cores / one hash)");
    println!("all cores       {together:.1} hashes/s ({cores} threads side by side, measured)");
    Ok(())
}
