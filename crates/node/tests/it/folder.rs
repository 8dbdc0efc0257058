//! Folders between real nodes: `shoal.list_folder` pages through a folder larger than a page,
//! and `shoal.download` and `fetch` of a folder bring every file with its layout.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_node::discovery::listing::{list_folder, list_folder_within};
use shoal_node::proto::limits::{LIST_ANSWER_BYTES, MAX_LIST_ENTRIES};
use shoal_xmlrpc::Value;

use super::util::{SECRET, TestNode, random_bytes, read, s};

/// The paths of one page, and its `next`.
fn page_of(answer: Value) -> (Vec<String>, Option<String>) {
    let Value::Struct(fields) = answer else {
        panic!("a page is a struct: {answer:?}")
    };
    let Some(Value::Array(files)) = fields.get("files") else {
        panic!("a page has files: {fields:?}")
    };
    let paths = files
        .iter()
        .map(|f| match f {
            Value::Struct(f) => match f.get("path") {
                Some(Value::String(p)) => p.clone(),
                other => panic!("an entry has a path: {other:?}"),
            },
            other => panic!("an entry is a struct: {other:?}"),
        })
        .collect();
    let next = match fields.get("next") {
        Some(Value::String(next)) => Some(next.clone()),
        None => None,
        other => panic!("next is a string: {other:?}"),
    };
    (paths, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_larger_than_a_page_lists_completely_through_the_cursor() {
    let node = TestNode::start().await;
    let count = MAX_LIST_ENTRIES * 2 + 37;
    let mut expected = Vec::new();
    for i in 0..count {
        let name = format!("big/d{}/f{i:05}.txt", i % 7);
        node.write(&name, format!("{i}").as_bytes());
        expected.push(name);
    }
    node.write("bigger/not-this.txt", b"x");
    node.write("big.txt", b"x");
    node.rescan().await;
    expected.sort();

    // Over the wire, page by page: each within the bounds, in order, none repeated.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    for _ in 0..count {
        let answer = node.call("shoal.list_folder", vec![s("big/"), s(&cursor)]).await.expect("a page");
        let xml = shoal_xmlrpc::encode_response(answer.clone());
        assert!(xml.len() <= LIST_ANSWER_BYTES);
        let (paths, next) = page_of(answer);
        assert!(paths.len() <= MAX_LIST_ENTRIES, "{} entries in a page", paths.len());
        pages += 1;
        listed.extend(paths);
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(pages, 3, "{count} files take three pages");
    assert_eq!(listed, expected, "every file once, in name order");

    // The client's paging gives the same, with sizes and ids.
    let client = shoal_node::net::Client::new(Duration::from_secs(3));
    let files = list_folder(&client, &node.url, "big").await.expect("the listing");
    assert_eq!(files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(), expected);
    let first = &files[0];
    assert_eq!(first.size, 1);
    assert_eq!(first.id, shoal_index::hash_bytes(b"0").id);

    // A budget of names shared by all the peers of a listing stops the paging once spent: the
    // listing keeps what fitted (here about one page's worth) instead of taking every page.
    let budget = std::sync::atomic::AtomicUsize::new(64 * 1024);
    let partial = list_folder_within(&client, &node.url, "big", &budget).await.expect("the listing");
    assert!(
        !partial.is_empty() && partial.len() < expected.len(),
        "{} of {}",
        partial.len(),
        expected.len()
    );
    assert_eq!(partial[..], files[..partial.len()], "what fitted is the start of the listing");

    // The whole share; a file name lists nothing; names outside the share are refused.
    let (all, _) = page_of(node.call("shoal.list_folder", vec![s("/"), s("")]).await.unwrap());
    assert_eq!(all.len(), MAX_LIST_ENTRIES);
    assert_eq!(all[0], "big.txt");
    let (none, next) = page_of(node.call("shoal.list_folder", vec![s("big.txt"), s("")]).await.unwrap());
    assert!(none.is_empty() && next.is_none());
    for bad in ["../", "/etc/", ".hidden/"] {
        let refused = node.call("shoal.list_folder", vec![s(bad), s("")]).await.unwrap_err();
        assert_eq!(refused.code, 200, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_download_and_fetch_of_a_folder_keep_its_layout() {
    let holder = TestNode::start().await;
    let mut files = BTreeMap::new();
    for (i, name) in ["photos/a.jpg", "photos/2024/b.jpg", "photos/2024/deep/c.jpg", "photos/big.bin"]
        .into_iter()
        .enumerate()
    {
        let len = if name.ends_with("big.bin") { 3 << 20 } else { 20_000 + i };
        let data = random_bytes(len, i as u64);
        holder.write(name, &data);
        files.insert(name, data);
    }
    holder.write("other/not-this.jpg", b"no");
    holder.rescan().await;

    // shoal.download into the share: photos/ lands in <share>/photos, in the background.
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;
    let started = node
        .call(
            "shoal.download",
            vec![s(SECRET), Value::Array(vec![s("photos/")]), Value::Struct(BTreeMap::new())],
        )
        .await
        .expect("the folder download starts");
    let Value::Struct(started) = started else { panic!("{started:?}") };
    assert_eq!(started.get("name"), Some(&s("photos/ (4 files)")));
    for _ in 0..1500 {
        if files.keys().all(|name| node.path(name).exists()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, data) in &files {
        assert_eq!(&read(&node.path(name)), data, "{name}");
    }
    assert!(!node.path("other").exists());

    // fetch of a folder, the seed's call: the same names in the share, done when it returns.
    let fetcher = TestNode::start().await;
    fetcher.knows(&[&holder]).await;
    assert_eq!(
        fetcher.call("fetch", vec![s("photos/2024/"), s(SECRET)]).await,
        Ok(Value::Integer(0))
    );
    assert_eq!(read(&fetcher.path("photos/2024/b.jpg")), files["photos/2024/b.jpg"]);
    assert_eq!(read(&fetcher.path("photos/2024/deep/c.jpg")), files["photos/2024/deep/c.jpg"]);
    assert!(!fetcher.path("photos/a.jpg").exists());
    // Again: every file is complete already (checked by its content id), so nothing is
    // refused as existing and the call succeeds.
    assert_eq!(
        fetcher.call("fetch", vec![s("photos/2024/"), s(SECRET)]).await,
        Ok(Value::Integer(0))
    );
    // A different file under one of the names is left alone, and the fetch says so.
    std::fs::write(fetcher.path("photos/2024/b.jpg"), b"mine").unwrap();
    let refused = fetcher.call("fetch", vec![s("photos/2024/"), s(SECRET)]).await.unwrap_err();
    assert!(refused.message.contains("already exists"), "{}", refused.message);
    assert_eq!(read(&fetcher.path("photos/2024/b.jpg")), b"mine");
}
