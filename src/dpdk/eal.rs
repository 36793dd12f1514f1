//! The EAL: its arguments, a pure function of the node config, and its one initialisation
//! per process.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{check, DpdkError};
use crate::node_config::DpdkSection;

/// argv[0] of the EAL.
const PROGRAM: &str = "shake";

/// Keys of virtual-device arguments that name files; relative ones are resolved against the
/// config file's directory, like every other path in it.
const PATH_KEYS: &[&str] = &[
    "rx_pcap",
    "tx_pcap",
    "rx_iface_in",
    "socket",
    "path",
    "xdp_prog",
];

/// The EAL arguments for a `[dpdk]` section, `base` being the config file's directory, with
/// `extra` (from the command line) appended last so an operator can override anything.
pub fn eal_args(dpdk: &DpdkSection, base: &Path, extra: &[String]) -> Vec<String> {
    let mut a = vec![PROGRAM.to_owned(), format!("--lcores={}", dpdk.lcores)];
    if let Some(main) = dpdk.main_lcore {
        a.push(format!("--main-lcore={main}"));
    }
    if let Some(mb) = dpdk.memory_mb {
        a.extend(["-m".to_owned(), mb.to_string()]);
    }
    if !dpdk.huge {
        a.push("--no-huge".into());
    }
    a.push(format!("--file-prefix={}", dpdk.file_prefix));
    if dpdk.allow.is_empty() {
        a.push("--no-pci".into());
    } else {
        for dev in &dpdk.allow {
            a.extend(["-a".to_owned(), dev.clone()]);
        }
    }
    for vdev in &dpdk.vdevs {
        a.push(format!("--vdev={}", resolve_vdev_paths(vdev, base)));
    }
    if let Some(level) = &dpdk.log_level {
        a.push(format!("--log-level={level}"));
    }
    if !dpdk.telemetry {
        a.push("--no-telemetry".into());
    }
    a.extend(dpdk.extra_args.iter().cloned());
    a.extend(extra.iter().cloned());
    a
}

/// "net_pcap0,rx_pcap=in.pcap" with `base` "/etc/shake" gives
/// "net_pcap0,rx_pcap=/etc/shake/in.pcap".
fn resolve_vdev_paths(vdev: &str, base: &Path) -> String {
    vdev.split(',')
        .map(|part| match part.split_once('=') {
            Some((key, value)) if PATH_KEYS.contains(&key) && !Path::new(value).is_absolute() => {
                format!("{key}={}", base.join(value).display())
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Dropping it calls `rte_eal_cleanup`; drop it last, on the thread
/// that created it (the main lcore), which is why it is neither `Send` nor `Sync`.
pub struct Eal {
    /// The EAL keeps pointers into its arguments; they live as long as it does.
    _args: Vec<CString>,
    _argv: Vec<*mut c_char>,
    runtime_dir: PathBuf,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("runtime_dir", &self.runtime_dir)
            .finish()
    }
}

impl Eal {
    /// `rte_eal_init` with `args` (`argv[0]` included). Once per process: a second call fails
    /// even after the first `Eal` was dropped, as DPDK cannot initialise twice.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        let args: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str())
                    .map_err(|_| DpdkError::Config(format!("EAL argument {a:?} contains NUL")))
            })
            .collect::<Result<_, _>>()?;
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len())
            .map_err(|_| DpdkError::Config("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc pointers to NUL-terminated strings owned by `args`, which
        // the returned Eal keeps alive until rte_eal_cleanup; INITIALISED guarantees this is
        // the process's only call.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        check(ret, || format!("rte_eal_init {:?}", display_args(&args)))?;
        // SAFETY: after a successful init the runtime directory is a NUL-terminated string in
        // EAL memory; it is copied at once.
        let runtime_dir = unsafe { CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) };
        Ok(Eal {
            _args: args,
            _argv: argv,
            runtime_dir: PathBuf::from(runtime_dir.to_string_lossy().into_owned()),
            _not_send: PhantomData,
        })
    }

    /// The lcore this thread runs on, which does control.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: the EAL is initialised (self exists).
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Every enabled lcore but the main one, in id order: worker `i` runs on the `i`-th.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: the EAL is initialised; rte_get_next_lcore only reads its lcore table.
        let mut lcore = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while lcore < dpdk_sys::RTE_MAX_LCORE {
            out.push(lcore);
            // SAFETY: as above.
            lcore = unsafe { dpdk_sys::rte_get_next_lcore(lcore, 1, 0) };
        }
        out
    }

    /// The EAL's runtime directory (`/var/run/dpdk/<file-prefix>`): its telemetry socket is
    /// there.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // Every DPDK object that needs the EAL borrows it (`Mempool<'eal>`, `Ring<'eal>`,
        // `Port<'eal>`, the appliance), so they are gone by now, unless one was leaked with
        // `mem::forget`. Two things the borrow cannot see are checked here:
        // - worker lcores still running a leaked appliance: wait for them (a hang, never a
        //   use after free);
        // - mbufs still out (an `Mbuf` carries no lifetime, to stay a bare pointer on the
        //   datapath): a pool with mbufs out is never freed, and then neither is the EAL's
        //   memory; the process exit releases it.
        // SAFETY: called on the main lcore of an initialised EAL.
        unsafe { dpdk_sys::rte_eal_mp_wait_lcore() };
        let pools = super::mempool::free_retired();
        if pools > 0 {
            eprintln!(
                "shake: {pools} mempool(s) still have mbufs out; EAL memory is left to the process exit"
            );
            return;
        }
        // SAFETY: the EAL was initialised by this value; no lcore runs, no pool is left,
        // and every object that borrowed the EAL has been dropped.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            eprintln!("shake: rte_eal_cleanup: {}", super::error::strerror(-ret));
        }
    }
}

fn display_args(args: &[CString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::node_config::NodeConfig;

    const NODE: &str = r#"
[node]
index = 0
count = 1
ipv4 = "10.0.0.2"

[activity]
file = "activity.toml"

[keys]
token_key = "keys/token.key"
claim_key = "keys/claim.key"

[dpdk]
lcores = "0-8"
main_lcore = 0
memory_mb = 2048
file_prefix = "shake-a"
allow = ["0000:03:00.0", "0000:03:00.1"]
vdevs = ["net_pcap0,rx_pcap=in.pcap,tx_pcap=/tmp/out.pcap,infinite_rx=1"]
log_level = "notice"
extra_args = ["--in-memory"]

[[port]]
name = "0000:03:00.0"
"#;

    #[test]
    fn golden_eal_args() {
        let c = NodeConfig::parse(Path::new("/etc/shake/node.toml"), NODE).unwrap();
        let dpdk = c.dpdk.as_ref().unwrap();
        let args = eal_args(
            dpdk,
            c.path.parent().unwrap(),
            &["--log-level=pmd.net.*:debug".to_owned()],
        );
        assert_eq!(
            args,
            [
                "shake",
                "--lcores=0-8",
                "--main-lcore=0",
                "-m",
                "2048",
                "--file-prefix=shake-a",
                "-a",
                "0000:03:00.0",
                "-a",
                "0000:03:00.1",
                "--vdev=net_pcap0,rx_pcap=/etc/shake/in.pcap,tx_pcap=/tmp/out.pcap,infinite_rx=1",
                "--log-level=notice",
                "--in-memory",
                "--log-level=pmd.net.*:debug",
            ]
        );
    }

    #[test]
    fn golden_eal_args_virtual_only() {
        let text = NODE
            .replace(
                "allow = [\"0000:03:00.0\", \"0000:03:00.1\"]\n",
                "huge = false\ntelemetry = false\n",
            )
            .replace("main_lcore = 0\n", "")
            .replace("memory_mb = 2048\n", "")
            .replace("log_level = \"notice\"\n", "")
            .replace("extra_args = [\"--in-memory\"]\n", "")
            .replace("name = \"0000:03:00.0\"", "id = 0");
        let c = NodeConfig::parse(Path::new("node.toml"), &text).unwrap();
        let args = eal_args(c.dpdk.as_ref().unwrap(), Path::new("conf"), &[]);
        assert_eq!(
            args,
            [
                "shake",
                "--lcores=0-8",
                "--no-huge",
                "--file-prefix=shake-a",
                "--no-pci",
                "--vdev=net_pcap0,rx_pcap=conf/in.pcap,tx_pcap=/tmp/out.pcap,infinite_rx=1",
                "--no-telemetry",
            ]
        );
    }

    /// With capture on, the command line cannot take away what a capture process attaches
    /// to; without it, anything goes as before.
    #[test]
    fn capture_refuses_conflicting_command_line_args() {
        let text = NODE.replace("extra_args = [\"--in-memory\"]\n", "capture = true\n");
        let c = NodeConfig::parse(Path::new("/etc/shake/node.toml"), &text).unwrap();
        assert!(c.dpdk.as_ref().unwrap().capture);
        for arg in ["--huge-unlink", "--no-shconf", "--in-memory", "--no-huge"] {
            let e = crate::dpdk::node_eal_args(&c, &["-m".into(), "64".into(), arg.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(arg), "{e}");
            assert!(e.contains("/etc/shake/node.toml"), "{e}");
            assert!(e.contains("capture = true"), "{e}");
        }
        let fine = [
            "--huge-unlink=existing".to_owned(),
            "--legacy-mem".to_owned(),
        ];
        let args = crate::dpdk::node_eal_args(&c, &fine).unwrap();
        assert!(args.ends_with(&fine), "{args:?}");
        // The same arguments without capture are the operator's business.
        let c = NodeConfig::parse(Path::new("/etc/shake/node.toml"), NODE).unwrap();
        let args = crate::dpdk::node_eal_args(&c, &["--huge-unlink".into()]).unwrap();
        assert_eq!(args.last().map(String::as_str), Some("--huge-unlink"));
    }

    #[test]
    fn an_af_xdp_program_is_found_next_to_the_config() {
        assert_eq!(
            resolve_vdev_paths(
                "net_af_xdp0,iface=eth1,xdp_prog=afxdp-filter.o,busy_budget=0",
                Path::new("/etc/shake")
            ),
            "net_af_xdp0,iface=eth1,xdp_prog=/etc/shake/afxdp-filter.o,busy_budget=0"
        );
    }

    #[test]
    fn dpdk_section_is_validated() {
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &NODE.replace("[[port]]\nname = \"0000:03:00.0\"\n", ""),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least one [[port]]"), "{e}");
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &NODE.replace("name = \"0000:03:00.0\"", "name = \"x\"\nid = 1"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("exactly one of name and id"), "{e}");
    }

    /// The shipped node configs parse, their keys and activity load, and their EAL
    /// arguments never probe PCI unless the file allows devices by address.
    #[test]
    fn nic_config_examples() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("nic-config");
        for (file, pci) in [
            ("demo.toml", false),
            ("pcap.toml", false),
            ("bare-metal.toml", true),
        ] {
            let c = NodeConfig::load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
            let args = eal_args(c.dpdk.as_ref().unwrap(), &dir, &[]);
            assert_eq!(
                args.contains(&"--no-pci".to_owned()),
                !pci,
                "{file}: {args:?}"
            );
            assert_eq!(args.iter().any(|a| a == "-a"), pci, "{file}: {args:?}");
            assert!(
                args.iter().any(|a| a.starts_with("--file-prefix=shake")),
                "{file}"
            );
            if !pci {
                c.identity().unwrap_or_else(|e| panic!("{file}: {e}"));
                c.activity().unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
        let pcap = NodeConfig::load(&dir.join("pcap.toml")).unwrap();
        let args = eal_args(pcap.dpdk.as_ref().unwrap(), &dir, &[]);
        let rx = format!("rx_pcap={}", dir.join("in.pcap").display());
        assert!(args.iter().any(|a| a.contains(&rx)), "{args:?}");
        // A cloud node on AF_XDP: no PCI, one vdev on the kernel's interface with the filter.
        let afxdp = NodeConfig::load(&dir.join("afxdp.toml")).unwrap_or_else(|e| panic!("{e}"));
        let args = eal_args(afxdp.dpdk.as_ref().unwrap(), &dir, &[]);
        assert!(args.contains(&"--no-pci".to_owned()), "{args:?}");
        assert!(
            args.iter()
                .any(|a| a.starts_with("--vdev=net_af_xdp0,iface=")
                    && a.ends_with(",xdp_prog=/etc/shake/afxdp-filter.o")),
            "{args:?}"
        );
        assert_eq!(afxdp.port[0].name.as_deref(), Some("net_af_xdp0"));
        let bare = NodeConfig::load(&dir.join("bare-metal.toml")).unwrap();
        assert_eq!(bare.port.len(), 2);
        assert!(bare.dpdk.as_ref().unwrap().huge);
    }
}
