//! The audit log's disk fills up under a running gateway: the request that cannot be recorded is
//! not answered with data, the gateway says why and stops (exit code 70), and every request it
//! answered before is in the log, which verifies once there is room again.
//!
//! The log lives on a small tmpfs mounted by the test (the tests run as root, as CI does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isnad_tests::{Federation, client_with, get, request};

/// A tmpfs of `size`, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("runs mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the disk-full test needs root, as CI has)",
            path.display()
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("runs mount");
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_stops_the_gateway_without_releasing_or_losing_anything() {
    let federation = Federation::start();
    let disk = SmallDisk::mount(&federation.dir().join("small-disk"), "16m");
    let mut config = federation.sample_gateway_config("", "");
    // Move the node's audit log onto the small disk.
    let text = std::fs::read_to_string(&config.path).expect("config");
    let audit = disk.path.join("audit");
    std::fs::write(
        &config.path,
        text.replace(
            &format!("dir: {}", config.audit.display()),
            &format!("dir: {}", audit.display()),
        ),
    )
    .expect("config");
    config.audit = audit.clone();
    let mut gateway = federation.start_gateway(&config);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let mut answered = Vec::new();
    for n in 0..5 {
        let id = format!("before-{n}");
        get(
            &mut client,
            isnad_proto::v1::AttributesRequest {
                request_id: id.clone(),
                ..request("identity.person", "housing-grant", &["full_name_en"])
            },
        )
        .await
        .expect("answered while there is room");
        answered.push(id);
    }

    // Fill the disk.
    let filler = disk.path.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    // Nothing is released without its record: every request from now on fails.
    let mut released_after = 0;
    for n in 0..20 {
        match get(
            &mut client,
            isnad_proto::v1::AttributesRequest {
                request_id: format!("after-{n}"),
                ..request("identity.person", "housing-grant", &["full_name_en"])
            },
        )
        .await
        {
            Ok(response) => {
                // Small records can still fit in the last free bytes; each answer must then be
                // in the log.
                released_after += 1;
                answered.push(format!("after-{n}"));
                assert!(response.provenance.is_some());
            }
            Err(status) => {
                if let Some(reason) = isnad_proto::errors::reason(&status) {
                    assert_eq!(reason, "audit_unavailable", "{status:?}");
                }
                break;
            }
        }
    }
    assert!(
        released_after < 20,
        "the gateway kept answering on a full disk"
    );
    let status = gateway.process.wait(Duration::from_secs(10));
    let logs = gateway.process.logs();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(70),
        "the gateway stops when its log cannot be written; log:\n{logs}"
    );
    assert!(logs.contains("the audit log cannot be written"), "{logs}");
    assert!(
        !logs.contains(&isnad_tests::applicant()),
        "the subject is in the log output"
    );

    // With room again, the log recovers and holds every answered request.
    std::fs::remove_file(&filler).expect("remove filler");
    disk.resize("64m");
    let mut gateway = federation.start_gateway(&config);
    get(
        &mut client_with(gateway.addr, &federation.material("housing-programme")),
        request("identity.person", "housing-grant", &["full_name_en"]),
    )
    .await
    .expect("serves again");
    assert!(
        gateway
            .process
            .terminate(Duration::from_secs(10))
            .await
            .is_some_and(|status| status.success())
    );
    let logged: Vec<String> = isnad_audit::Export::open(&audit, isnad_audit::LeafIndex(0), None)
        .expect("export")
        .map(|record| record.expect("record").record.request_id)
        .collect();
    for id in &answered {
        assert!(
            logged.contains(id),
            "{id} was answered but is not in the log"
        );
    }
    let output = Command::new(isnad_tests::isnad_bin())
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
