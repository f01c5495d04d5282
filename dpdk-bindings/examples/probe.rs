//! Start-up probe: initialise EAL with the given arguments, list the ports and their
//! drivers, check that mempools can be created and that the named ports exist.
//!
//! ```text
//! probe [EAL args...] [-- port names...]
//! probe --in-memory --no-pci --vdev=net_null0 --log-level=lib.eal:debug -- net_null0 net_memif0
//! ```

use dpdk_bindings::{Eal, Port, diag};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (eal_args, names) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    let eal = match Eal::init(eal_args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("probe: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "{} (ABI {}), plugin dir {}",
        Eal::version(),
        diag::DPDK_ABI,
        diag::PMD_DIR
    );
    println!("mempool drivers: {:?}", diag::mempool_ops_names());
    for id in eal.ports() {
        let info = Port::open(&eal, id).and_then(|p| Ok((p.name()?, p.info()?)));
        match info {
            Ok((name, info)) => println!("{id}: {name} driver {}", info.driver_name),
            Err(e) => println!("{id}: {e}"),
        }
    }
    let mut ok = true;
    if let Err(e) = diag::check_mempool(&eal) {
        println!("mempool: {e}");
        ok = false;
    }
    for name in names {
        match diag::check_ports(&eal, &[name]) {
            Ok(ids) => println!("{name}: {}", ids[0]),
            Err(e) => {
                println!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
