//! The audit log's disk fills up, or its file system turns read-only, under a running gateway:
//! the request that cannot be recorded is not answered with data, the gateway says why and stops
//! (exit code 70), and every request it answered before is in the log, which verifies once the
//! disk is usable again.
//!
//! The log lives on a small tmpfs, or on an ext4 image on a loop device, mounted by the test (the
//! tests run as root, as CI does). The read-only case is the real one: ext4 mounted with
//! `errors=remount-ro` and an error triggered through its sysfs `trigger_fs_error` knob, as a
//! failing disk would, so writes to files already open fail with EROFS.

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

/// An ext4 file system in an image on a loop device, mounted with `errors=remount-ro`.
struct Ext4Disk {
    image: PathBuf,
    path: PathBuf,
}

impl Ext4Disk {
    fn create(image: &Path, path: &Path) -> Ext4Disk {
        let file = std::fs::File::create(image).expect("image");
        file.set_len(64 << 20).expect("image size");
        drop(file);
        run("mkfs.ext4", &["-q", image.to_str().expect("utf-8")]);
        let disk = Ext4Disk {
            image: image.to_owned(),
            path: path.to_owned(),
        };
        disk.mount();
        disk
    }

    fn mount(&self) {
        std::fs::create_dir_all(&self.path).expect("mount point");
        run(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                self.image.to_str().expect("utf-8"),
                self.path.to_str().expect("utf-8"),
            ],
        );
    }

    /// Makes the file system fail as a failing disk does: ext4 remounts it read-only.
    fn fail(&self) {
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.path)
            .output()
            .expect("findmnt");
        let device = String::from_utf8_lossy(&source.stdout).trim().to_owned();
        let name = device.trim_start_matches("/dev/");
        std::fs::write(
            format!("/sys/fs/ext4/{name}/trigger_fs_error"),
            "isnad test: disk failure\n",
        )
        .expect("trigger an ext4 error");
    }

    /// Unmounts, repairs (clears the error state) and mounts again read-write.
    fn repair(&self) {
        run("umount", &[self.path.to_str().expect("utf-8")]);
        // e2fsck exits 1 when it fixed something: the error flag it clears.
        let status = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .status()
            .expect("e2fsck");
        assert!(status.code().is_some_and(|code| code <= 1), "{status:?}");
        self.mount();
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        status.success(),
        "{program} {args:?} failed (this test needs root and loop devices, as CI has)"
    );
}

/// Moves the audit log of a gateway configuration to `audit`.
fn with_audit_at(config: &mut isnad_tests::GatewayConfig, audit: PathBuf) {
    let text = std::fs::read_to_string(&config.path).expect("config");
    std::fs::write(
        &config.path,
        text.replace(
            &format!("dir: {}", config.audit.display()),
            &format!("dir: {}", audit.display()),
        ),
    )
    .expect("config");
    config.audit = audit;
}

async fn ask(
    client: &mut isnad_proto::v1::exchange_client::ExchangeClient<tonic::transport::Channel>,
    id: &str,
) -> Result<isnad_proto::v1::AttributesResponse, tonic::Status> {
    get(
        client,
        isnad_proto::v1::AttributesRequest {
            request_id: id.to_owned(),
            ..request("identity.person", "housing-grant", &["full_name_en"])
        },
    )
    .await
}

/// Every id of `answered` is in the log at `audit`, and the log verifies.
fn assert_logged_and_verified(audit: &Path, answered: &[String]) {
    let logged: Vec<String> = isnad_audit::Export::open(audit, isnad_audit::LeafIndex(0), None)
        .expect("export")
        .map(|record| record.expect("record").record.request_id)
        .collect();
    for id in answered {
        assert!(
            logged.contains(id),
            "{id} was answered but is not in the log"
        );
    }
    let output = Command::new(isnad_tests::isnad_bin())
        .args(["audit", "verify"])
        .arg(audit)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test]
async fn a_read_only_file_system_stops_the_gateway_without_releasing_or_losing_anything() {
    let federation = Federation::start();
    let disk = Ext4Disk::create(
        &federation.dir().join("disk.img"),
        &federation.dir().join("ext4-disk"),
    );
    let mut config = federation.sample_gateway_config("", "");
    let audit = disk.path.join("audit");
    with_audit_at(&mut config, audit.clone());
    let mut gateway = federation.start_gateway(&config);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let mut answered = Vec::new();
    for n in 0..5 {
        let id = format!("before-{n}");
        ask(&mut client, &id)
            .await
            .expect("answered while writable");
        answered.push(id);
    }

    disk.fail();
    let status = ask(&mut client, "after")
        .await
        .expect_err("nothing is released unaudited");
    if let Some(reason) = isnad_proto::errors::reason(&status) {
        assert_eq!(reason, "audit_unavailable", "{status:?}");
    }
    let exit = gateway.process.wait(Duration::from_secs(10));
    let logs = gateway.process.logs();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(70),
        "the gateway stops when its log cannot be written; log:\n{logs}"
    );
    assert!(logs.contains("the audit log cannot be written"), "{logs}");
    assert!(
        logs.to_lowercase().contains("read-only"),
        "the cause is named: {logs}"
    );
    assert!(!logs.contains(&isnad_tests::applicant()));

    // Repaired and writable again, the log recovers and holds every answered request.
    disk.repair();
    let mut gateway = federation.start_gateway(&config);
    ask(
        &mut client_with(gateway.addr, &federation.material("housing-programme")),
        "repaired",
    )
    .await
    .expect("serves again");
    answered.push("repaired".into());
    assert!(
        gateway
            .process
            .terminate(Duration::from_secs(10))
            .await
            .is_some_and(|status| status.success())
    );
    assert_logged_and_verified(&audit, &answered);
}

#[tokio::test]
async fn a_full_disk_stops_the_gateway_without_releasing_or_losing_anything() {
    let federation = Federation::start();
    let disk = SmallDisk::mount(&federation.dir().join("small-disk"), "16m");
    let mut config = federation.sample_gateway_config("", "");
    let audit = disk.path.join("audit");
    with_audit_at(&mut config, audit.clone());
    let mut gateway = federation.start_gateway(&config);
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let mut answered = Vec::new();
    for n in 0..5 {
        let id = format!("before-{n}");
        ask(&mut client, &id)
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
        match ask(&mut client, &format!("after-{n}")).await {
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
    assert_logged_and_verified(&audit, &answered);
}
