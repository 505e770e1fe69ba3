//! Unfinished multipart uploads on cloud stores can be found and aborted: a killed
//! writer's upload is listed by `list_staged`, a later write of the same key aborts it,
//! and `clean_staged` aborts the rest. On the S3-compatible server, where an aborted
//! upload can be checked (a part sent to it afterwards is refused), and on Azurite (which
//! keeps uncommitted blocks until they expire: only the listing is checked there).

use crate::common;

use common::Cloud;
use std::process::{Command, Stdio};
use std::time::Duration;
use tributary::stores::ObjectSink;
use tributary::{ObjectTarget, Sink};

const MIB: usize = 1 << 20;

/// The child: open `key`, send one 6 MiB part, say so, and wait to be killed.
#[tokio::test]
#[ignore = "run as a child process by the tests below"]
async fn killed_writer_child() {
    let cloud = Cloud::from_name(&std::env::var("TRIBUTARY_UPLOAD_CLOUD").unwrap()).unwrap();
    let prefix = std::env::var("TRIBUTARY_UPLOAD_PREFIX").unwrap();
    let sink = cloud.sink(&prefix).unwrap();
    let mut w = sink
        .open(&ObjectTarget::new("t/a.csv", "text/csv"))
        .await
        .unwrap();
    w.write(vec![b'x'; 6 * MIB].into()).await.unwrap();
    w.write(vec![b'y'; 6 * MIB].into()).await.unwrap(); // the first part is sent by now
    println!("ready");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Run the child until it has a part in flight, then SIGKILL it.
fn kill_a_writer(cloud: Cloud, prefix: &str) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "staged_uploads::killed_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("TRIBUTARY_UPLOAD_CLOUD", cloud.name())
        .env("TRIBUTARY_UPLOAD_PREFIX", prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("ready"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child did not get its upload going");
}

/// The upload id a marker names (read as the store holds it).
async fn upload_id(sink: &ObjectSink, marker: &std::path::Path) -> String {
    use object_store::ObjectStoreExt;
    let path = object_store::path::Path::from(marker.to_str().unwrap());
    let body = sink
        .store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["upload_id"].as_str().unwrap().to_string()
}

/// Whether S3 still takes parts for `upload_id` of `key` (false once aborted).
#[cfg(feature = "s3")]
async fn s3_upload_open(key: &str, upload_id: &str) -> bool {
    use object_store::multipart::MultipartStore;
    let (bucket, opts) = common::s3_options().unwrap();
    let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
    for (k, v) in opts {
        b = b.with_config(k.parse().unwrap(), v);
    }
    let s3 = b.build().unwrap();
    let path = object_store::path::Path::from(key);
    s3.put_part(&path, &upload_id.to_string(), 9, "x".into())
        .await
        .is_ok()
}

async fn killed_uploads_are_found_and_aborted(cloud: Cloud) {
    let prefix = common::unique("uploads");
    let Some(sink) = cloud.sink(&prefix) else {
        return;
    };
    assert!(sink.list_staged().await.unwrap().is_empty());

    // A killed writer leaves its upload, listed with the key it was writing, and
    // nothing a reader sees.
    kill_a_writer(cloud, &prefix);
    let staged = sink.list_staged().await.unwrap();
    assert_eq!(staged.len(), 1, "{staged:?}");
    let full_key = format!("{prefix}/t/a.csv");
    assert_eq!(staged[0].upload.as_deref(), Some(full_key.as_str()));
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "no object, no marker in list()"
    );
    let dead_id = upload_id(&sink, &staged[0].path).await;
    #[cfg(feature = "s3")]
    if cloud == Cloud::S3 {
        assert!(
            s3_upload_open(&full_key, &dead_id).await,
            "the killed upload is open"
        );
    }

    // A new write of the same key aborts the dead writer's upload first; its own is
    // the only one listed while it runs, and none once it commits.
    let mut w = sink
        .open(&ObjectTarget::new("t/a.csv", "text/csv"))
        .await
        .unwrap();
    let during = sink.list_staged().await.unwrap();
    assert_eq!(during.len(), 1, "{during:?}");
    assert_ne!(
        during[0].path, staged[0].path,
        "the dead writer's marker is gone"
    );
    #[cfg(feature = "s3")]
    if cloud == Cloud::S3 {
        assert!(
            !s3_upload_open(&full_key, &dead_id).await,
            "the killed upload was aborted"
        );
    }
    w.write("1|a\n".into()).await.unwrap();
    w.commit().await.unwrap();
    assert!(sink.list_staged().await.unwrap().is_empty());
    assert_eq!(&sink.read("t/a.csv").await.unwrap()[..], b"1|a\n");

    // Another killed writer: clean_staged keeps what is younger than asked, aborts the rest.
    kill_a_writer(cloud, &prefix);
    let staged = sink.list_staged().await.unwrap();
    assert_eq!(staged.len(), 1);
    let id = upload_id(&sink, &staged[0].path).await;
    assert_eq!(
        sink.clean_staged(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(sink.clean_staged(Duration::ZERO).await.unwrap(), 1);
    assert!(sink.list_staged().await.unwrap().is_empty());
    #[cfg(feature = "s3")]
    if cloud == Cloud::S3 {
        assert!(
            !s3_upload_open(&full_key, &id).await,
            "clean_staged aborted it"
        );
    }
    let _ = id;
    // The committed object is untouched by all of this.
    assert_eq!(&sink.read("t/a.csv").await.unwrap()[..], b"1|a\n");
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_uploads_are_found_and_aborted() {
    killed_uploads_are_found_and_aborted(Cloud::S3).await;
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_killed_uploads_are_found() {
    killed_uploads_are_found_and_aborted(Cloud::Azure).await;
}

/// A live writer of the same key (a retry racing its first attempt) is not aborted.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_writer_of_the_same_key_is_left_alone() {
    let Some(sink) = Cloud::S3.sink(&common::unique("uploads-live")) else {
        return;
    };
    let target = ObjectTarget::new("t/a.csv", "text/csv");
    let mut first = sink.open(&target).await.unwrap();
    first.write(vec![b'a'; 6 * MIB].into()).await.unwrap();
    let mut second = sink.open(&target).await.unwrap();
    second.write("b\n".into()).await.unwrap();
    assert_eq!(sink.list_staged().await.unwrap().len(), 2);
    first.commit().await.unwrap();
    second.commit().await.unwrap();
    assert_eq!(&sink.read("t/a.csv").await.unwrap()[..], b"b\n");
    assert!(sink.list_staged().await.unwrap().is_empty());
}

/// A writer killed after its upload completed, before it deleted the marker, leaves a
/// marker of a finished upload: cleaning drops it (the abort it gets refused is that) and
/// leaves the object alone. s3s-fs refuses such an abort with 403, S3 with NoSuchUpload.
async fn a_finished_uploads_marker_is_dropped(cloud: Cloud) {
    use object_store::{ObjectStoreExt, PutPayload};
    let Some(sink) = cloud.sink(&common::unique("uploads-done")) else {
        return;
    };
    let mut w = sink
        .open(&ObjectTarget::new("t/a.csv", "text/csv"))
        .await
        .unwrap();
    let staged = sink.list_staged().await.unwrap();
    assert_eq!(staged.len(), 1);
    let marker = object_store::path::Path::from(staged[0].path.to_str().unwrap());
    let body = sink
        .store()
        .get(&marker)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    w.write("1|a\n".into()).await.unwrap();
    w.commit().await.unwrap();
    assert!(sink.list_staged().await.unwrap().is_empty());
    // As if the process died between completing the upload and deleting its marker.
    sink.store()
        .put(&marker, PutPayload::from(body))
        .await
        .unwrap();
    assert_eq!(sink.list_staged().await.unwrap().len(), 1);
    assert_eq!(sink.clean_staged(Duration::ZERO).await.unwrap(), 1);
    assert!(sink.list_staged().await.unwrap().is_empty());
    assert_eq!(&sink.read("t/a.csv").await.unwrap()[..], b"1|a\n");
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_finished_uploads_marker_is_dropped() {
    a_finished_uploads_marker_is_dropped(Cloud::S3).await;
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_a_finished_uploads_marker_is_dropped() {
    a_finished_uploads_marker_is_dropped(Cloud::Azure).await;
}
