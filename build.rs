//! The migrations are embedded in the binary (refinery's `embed_migrations!`), which cargo
//! does not track: without this, adding or editing a migration left the old set built in.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
