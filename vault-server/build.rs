//! Rebuild when a migration is added: `sqlx::migrate!` embeds the files but
//! only notices edits to ones it already knows.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
