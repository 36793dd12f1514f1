//! `seedgen`'s output: one shard per (node, worker) and a manifest of them all.
//!
//! Layout: `DIR/manifest.toml`, `DIR/node-<n>/worker-<w>.shard`. A node is given its
//! `node-<n>` directory; tools and reconcile read the manifest with any set of shards.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::activity::Activity;

use super::plan::plan;
use super::shard::{self, ShardError, ShardExpect, ShardIdentity, ShardImage};
use super::SeedRecord;

pub const MANIFEST_FILE: &str = "manifest.toml";
pub const MANIFEST_VERSION: u32 = 1;

/// Where seedgen puts a shard, relative to its output directory.
pub fn shard_rel_path(node: u32, worker: u32) -> PathBuf {
    PathBuf::from(format!("node-{node}")).join(format!("worker-{worker}.shard"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub manifest: ManifestHeader,
    pub sponsor: Vec<SponsorTotals>,
    pub round: Vec<RoundTotals>,
    pub shard: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestHeader {
    pub version: u32,
    pub activity_id: u32,
    pub activity_name: String,
    /// The random seed, as a decimal string (TOML integers are signed 64-bit).
    pub random_seed: String,
    pub nodes: u32,
    pub workers: u32,
    pub packets: u64,
    pub cents: u64,
    pub shard_version: u32,
}

/// A sponsor's totals over all shards; index is its position in the activity (and in every
/// shard record's sponsor_index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SponsorTotals {
    pub index: u16,
    pub id: u32,
    pub budget_cents: u64,
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundTotals {
    pub index: u16,
    pub id: u32,
    pub packets: u64,
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub node: u32,
    pub worker: u32,
    /// Relative to the manifest's directory.
    pub file: String,
    pub checksum: u32,
    pub records: u64,
    pub cents: u64,
    /// Indexed by sponsor index.
    pub sponsor_packets: Vec<u64>,
    pub sponsor_cents: Vec<u64>,
    /// Indexed by round index.
    pub round_packets: Vec<u64>,
    pub round_cents: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("{0}")]
    Invalid(String),
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let m: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if m.manifest.version != MANIFEST_VERSION {
            return Err(ManifestError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "manifest version {}, this build reads {MANIFEST_VERSION}",
                    m.manifest.version
                ),
            });
        }
        Ok(m)
    }

    /// Sponsor id of a sponsor index, if in range.
    pub fn sponsor_id(&self, index: u16) -> Option<u32> {
        self.sponsor.get(index as usize).map(|s| s.id)
    }

    pub fn round_id(&self, index: u16) -> Option<u32> {
        self.round.get(index as usize).map(|r| r.id)
    }
}

/// Per-sponsor and per-round counts of a set of records.
fn tally(
    records: &[SeedRecord],
    sponsors: usize,
    rounds: usize,
) -> (Vec<u64>, Vec<u64>, Vec<u64>, Vec<u64>) {
    let (mut sp, mut sc, mut rp, mut rc) = (
        vec![0u64; sponsors],
        vec![0u64; sponsors],
        vec![0u64; rounds],
        vec![0u64; rounds],
    );
    for r in records {
        let (s, ro) = (r.sponsor_index as usize, r.round_index as usize);
        if s < sponsors {
            sp[s] += 1;
            sc[s] += r.amount_cents as u64;
        }
        if ro < rounds {
            rp[ro] += 1;
            rc[ro] += r.amount_cents as u64;
        }
    }
    (sp, sc, rp, rc)
}

/// Plans `activity` for `nodes` × `workers` and writes every shard and the manifest under
/// `out`. Deterministic for a given `random_seed`.
///
/// `out` must not exist or be empty: a set of shards is one generation, and a shard left from
/// an earlier, larger set would share packet_ids with the new one. Everything is written into
/// a fresh sibling directory, synced, and renamed to `out` as a whole, so a crash never leaves
/// a mix or a half set under the real name.
pub fn generate(
    activity: &Activity,
    nodes: u32,
    workers: u32,
    random_seed: u64,
    out: &Path,
) -> Result<Manifest, ManifestError> {
    if nodes == 0 || workers == 0 {
        return Err(ManifestError::Invalid(
            "nodes and workers must be at least 1".into(),
        ));
    }
    if activity.rounds.len() > shard::MAX_ROUNDS {
        return Err(ManifestError::Invalid(format!(
            "{}: {} rounds, a shard holds at most {}",
            activity.path.display(),
            activity.rounds.len(),
            shard::MAX_ROUNDS
        )));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Io { path, source }
    };
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if let Some(e) = entries.next() {
                let first = e.map_err(io(out))?.path();
                return Err(ManifestError::Invalid(format!(
                    "{}: not empty (it holds {}): seedgen writes a whole new set of seeds into a new or empty directory, so that no shard of an earlier set is left beside it; remove it or choose another --out",
                    out.display(),
                    first.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(out)(e)),
    }
    let name = out.file_name().ok_or_else(|| {
        ManifestError::Invalid(format!("{}: not a directory name", out.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".seedgen-{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = write_set(activity, nodes, workers, random_seed, &tmp);
    let manifest = match written {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // rename(2) replaces an empty directory; a non-empty one that appeared meanwhile fails.
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        io(out)(e)
    })?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(manifest)
}

/// Writes the shards and the manifest into `out` (an empty directory).
fn write_set(
    activity: &Activity,
    nodes: u32,
    workers: u32,
    random_seed: u64,
    out: &Path,
) -> Result<Manifest, ManifestError> {
    let planned = plan(activity, nodes, workers, random_seed);
    let (ns, nr) = (activity.sponsors.len(), activity.rounds.len());
    let mut entries = Vec::with_capacity((nodes * workers) as usize);
    let mut records: Vec<SeedRecord> = Vec::new();
    let mut start = 0usize;
    for node in 0..nodes {
        let dir = out.join(format!("node-{node}"));
        std::fs::create_dir_all(&dir).map_err(|e| ManifestError::Io {
            path: dir.clone(),
            source: e,
        })?;
        for worker in 0..workers {
            let shard_no = node * workers + worker;
            let end = start + planned[start..].partition_point(|p| p.shard <= shard_no);
            records.clear();
            records.extend(planned[start..end].iter().map(|p| p.record));
            start = end;
            let rel = shard_rel_path(node, worker);
            let checksum = shard::write_shard(
                &out.join(&rel),
                ShardIdentity {
                    activity_id: activity.header.id,
                    node,
                    worker,
                    random_seed,
                },
                nr,
                &records,
            )?;
            let (sponsor_packets, sponsor_cents, round_packets, round_cents) =
                tally(&records, ns, nr);
            entries.push(ShardEntry {
                node,
                worker,
                file: rel.to_string_lossy().into_owned(),
                checksum,
                records: records.len() as u64,
                cents: sponsor_cents.iter().sum(),
                sponsor_packets,
                sponsor_cents,
                round_packets,
                round_cents,
            });
        }
    }
    let (mut rp, mut rc) = (vec![0u64; nr], vec![0u64; nr]);
    for e in &entries {
        for r in 0..nr {
            rp[r] += e.round_packets[r];
            rc[r] += e.round_cents[r];
        }
    }
    let (packets, cents) = activity.totals();
    let manifest = Manifest {
        manifest: ManifestHeader {
            version: MANIFEST_VERSION,
            activity_id: activity.header.id,
            activity_name: activity.header.name.clone(),
            random_seed: random_seed.to_string(),
            nodes,
            workers,
            packets,
            cents,
            shard_version: shard::VERSION,
        },
        sponsor: activity
            .sponsors
            .iter()
            .enumerate()
            .map(|(i, s)| SponsorTotals {
                index: i as u16,
                id: s.id,
                budget_cents: s.budget_cents,
                packets: s.packets as u64,
            })
            .collect(),
        round: activity
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| RoundTotals {
                index: i as u16,
                id: r.id,
                packets: rp[i],
                cents: rc[i],
            })
            .collect(),
        shard: entries,
    };
    let path = out.join(MANIFEST_FILE);
    let text = toml::to_string(&manifest).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let tmp = path.with_extension("toml.tmp");
    let io = |e| ManifestError::Io {
        path: path.clone(),
        source: e,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    for d in
        std::iter::once(out.to_path_buf()).chain((0..nodes).map(|n| out.join(format!("node-{n}"))))
    {
        std::fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(|e| ManifestError::Io {
                path: d.clone(),
                source: e,
            })?;
    }
    Ok(manifest)
}

/// Shard files (`*.shard`, and `*.shard.tmp` debris) under `dir`, recursively, relative to it.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| ManifestError::Io {
            path: d.clone(),
            source: e,
        })?;
        for e in rd {
            let e = e.map_err(|e| ManifestError::Io {
                path: d.clone(),
                source: e,
            })?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".shard") || n.ends_with(".shard.tmp"))
            {
                out.push(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Shard files under `dir` (the manifest's directory, or one node's `node-<n>` below it,
/// given as `sub`) that the manifest does not list: a shard the manifest does not know of is
/// from another generation of seeds, and serving it would issue packet_ids twice.
pub fn unlisted_shards(
    dir: &Path,
    sub: Option<&Path>,
    manifest: &Manifest,
) -> Result<Vec<PathBuf>, ManifestError> {
    let root = sub.map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
    let listed: std::collections::HashSet<PathBuf> = manifest
        .shard
        .iter()
        .map(|e| PathBuf::from(&e.file))
        .collect();
    Ok(shard_files(&root)?
        .into_iter()
        .map(|rel| sub.map_or_else(|| rel.clone(), |s| s.join(&rel)))
        .filter(|rel| !listed.contains(rel))
        .map(|rel| dir.join(rel))
        .collect())
}

/// Checks that `manifest` (loaded from `dir`) describes the seeds `activity` and a node
/// config with `node_count` nodes should serve, that it lists this node's shards as seedgen
/// lays them out, and that the node's directory holds no shard it does not list. Returns the
/// node's worker count: the manifest, not the files found, says how many workers there are.
pub fn node_workers(
    dir: &Path,
    manifest: &Manifest,
    activity: &Activity,
    node: u32,
    node_count: u32,
) -> Result<u32, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let bad = |message: String| ManifestError::Parse {
        path: path.clone(),
        message,
    };
    let h = &manifest.manifest;
    if h.activity_id != activity.header.id {
        return Err(bad(format!(
            "seeds of activity {}, but {} is activity {}",
            h.activity_id,
            activity.path.display(),
            activity.header.id
        )));
    }
    let ids = |v: &mut dyn Iterator<Item = u32>| v.collect::<Vec<u32>>();
    let (ms, as_) = (
        ids(&mut manifest.sponsor.iter().map(|s| s.id)),
        ids(&mut activity.sponsors.iter().map(|s| s.id)),
    );
    if ms != as_ {
        return Err(bad(format!(
            "sponsors {ms:?}, but {} has sponsors {as_:?} (seeds are bound to the sponsors by position: run seedgen again for an edited activity)",
            activity.path.display()
        )));
    }
    let (mr, ar) = (
        ids(&mut manifest.round.iter().map(|r| r.id)),
        ids(&mut activity.rounds.iter().map(|r| r.id)),
    );
    if mr != ar {
        return Err(bad(format!(
            "rounds {mr:?}, but {} has rounds {ar:?} (seeds are bound to the rounds by position: run seedgen again for an edited activity)",
            activity.path.display()
        )));
    }
    if h.nodes != node_count || node >= h.nodes {
        return Err(bad(format!(
            "seeds for {} nodes, but the node config says node {node} of {node_count}",
            h.nodes
        )));
    }
    for w in 0..h.workers {
        let want = shard_rel_path(node, w);
        let listed = manifest
            .shard
            .iter()
            .filter(|e| e.node == node && e.worker == w)
            .collect::<Vec<_>>();
        match listed.as_slice() {
            [e] if Path::new(&e.file) == want => {}
            [] => return Err(bad(format!("lists no shard for node {node} worker {w}"))),
            _ => {
                return Err(bad(format!(
                    "lists node {node} worker {w} other than as one {}",
                    want.display()
                )))
            }
        }
    }
    if let Some(e) = manifest
        .shard
        .iter()
        .find(|e| e.node == node && e.worker >= h.workers)
    {
        return Err(bad(format!(
            "lists node {node} worker {}, but its header says {} workers per node",
            e.worker, h.workers
        )));
    }
    let node_dir = PathBuf::from(format!("node-{node}"));
    let stray = unlisted_shards(dir, Some(&node_dir), manifest)?;
    if let Some(first) = stray.first() {
        return Err(ManifestError::Invalid(format!(
            "{}: not listed in {} ({} such shard files): a shard of another generation of seeds; remove it (or run seedgen into a new directory)",
            first.display(),
            path.display(),
            stray.len()
        )));
    }
    Ok(h.workers)
}

/// Checks every shard the manifest lists under `dir` against it (checksum, counts, totals),
/// and the manifest's own totals. Returns the problems found, each naming its file; a shard
/// that cannot be opened is a problem too, so one bad shard does not hide the others.
pub fn verify(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    match unlisted_shards(dir, None, manifest) {
        Ok(stray) => problems.extend(stray.iter().map(|p| {
            format!(
                "{}: not listed in {} (a shard of another generation of seeds)",
                p.display(),
                dir.join(MANIFEST_FILE).display()
            )
        })),
        Err(e) => problems.push(e.to_string()),
    }
    let (ns, nr) = (manifest.sponsor.len(), manifest.round.len());
    let mut sp_total = vec![0u64; ns];
    let mut sc_total = vec![0u64; ns];
    for e in &manifest.shard {
        // Only where seedgen puts it: an entry naming an absolute path or `..` would have
        // verify read any file on the machine (a device never ends).
        let want = shard_rel_path(e.node, e.worker);
        if Path::new(&e.file) != want {
            problems.push(format!(
                "{}: shard node {} worker {} is listed as {:?}, not {}",
                dir.join(MANIFEST_FILE).display(),
                e.node,
                e.worker,
                e.file,
                want.display()
            ));
            continue;
        }
        let path = dir.join(&e.file);
        let expect = ShardExpect {
            activity_id: Some(manifest.manifest.activity_id),
            node: Some(e.node),
            worker: Some(e.worker),
            sponsors: Some(ns),
            rounds: Some(nr),
            ..Default::default()
        };
        let img = match ShardImage::load(&path, &expect) {
            Ok(i) => i,
            Err(err) => {
                problems.push(err.to_string());
                continue;
            }
        };
        if img.header.checksum != e.checksum {
            problems.push(format!(
                "{}: checksum {:#010x}, manifest says {:#010x}",
                path.display(),
                img.header.checksum,
                e.checksum
            ));
        }
        let records: Vec<SeedRecord> = (0..img.len()).map(|i| img.record(i)).collect();
        let (sp, sc, rp, rc) = tally(&records, ns, nr);
        if let Some(bad) = records
            .iter()
            .position(|r| r.sponsor_index as usize >= ns || r.round_index as usize >= nr)
        {
            problems.push(format!(
                "{}: record {bad}: sponsor or round index outside the manifest's",
                path.display()
            ));
        }
        if records.len() as u64 != e.records
            || sp != e.sponsor_packets
            || sc != e.sponsor_cents
            || rp != e.round_packets
            || rc != e.round_cents
            || sc.iter().sum::<u64>() != e.cents
        {
            problems.push(format!(
                "{}: counts or totals differ from the manifest",
                path.display()
            ));
        }
        for s in 0..ns {
            sp_total[s] += sp[s];
            sc_total[s] += sc[s];
        }
    }
    for (i, s) in manifest.sponsor.iter().enumerate() {
        if sp_total[i] != s.packets || sc_total[i] != s.budget_cents {
            problems.push(format!(
                "sponsor {}: shards hold {} packets, {} cents; budget is {} packets, {} cents",
                s.id, sp_total[i], sc_total[i], s.packets, s.budget_cents
            ));
        }
    }
    problems
}
