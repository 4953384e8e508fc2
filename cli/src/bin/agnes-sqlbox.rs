//! `agnes-sqlbox`: the process in which the server runs SQL over Agnes tables (materialized
//! tables of an `agnes:sql` source), confined by the OS. Started by the server with a job
//! on stdin; not meant to be run by hand. See `agnes_runtime::sqlbox`.

fn main() {
    std::process::exit(agnes_runtime::sqlbox::sandbox_main());
}
