//! Both binaries build and describe themselves.

use std::process::Command;

#[test]
fn both_binaries_answer_help() {
    for (bin, words) in [("vault", "encrypted"), ("vault-server", "server")] {
        let out = Command::new(tests::binary(bin))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(words), "{bin} --help: {text}");
        assert!(text.contains("Usage:"), "{bin} --help: {text}");
    }
}
