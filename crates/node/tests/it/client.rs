//! The typed node client against real nodes: every call it sends is one a node decodes, and
//! every answer a node encodes is one the client reads back whole (the two directions of each
//! call in `proto::calls` meet over real HTTP).

use std::time::Duration;

use shoal_node::net::{Client, NodeClient};
use shoal_node::proto::calls::{Action, Control, Download, ListFolder, Locate, Query, RouteParams, Search};
use shoal_node::proto::faults::NOT_FOUND;

use super::util::{SECRET, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_reads_every_answer_a_node_gives() {
    let holder = TestNode::start().await;
    holder.add("docs/a.txt", b"hello").await;
    let node = TestNode::start().await;
    let client = Client::new(Duration::from_secs(3));
    let asked = NodeClient::new(&client, &node.url);
    let at_holder = NodeClient::new(&client, &holder.url);

    asked.hello(&holder.url).await.expect("hello");
    assert!(asked.list_methods().await.expect("listMethods").iter().any(|m| m == "shoal.search"));
    assert_eq!(asked.peers().await.expect("peers"), std::slice::from_ref(&holder.url));
    let stats = asked.stats().await.expect("stats");
    assert_eq!((stats.url.as_str(), stats.peers, stats.files), (node.url.as_str(), 1, 0));

    // A search and a locate forwarded to the holder; the seed's query reads its content.
    let found = asked.search(&Search::new("a.txt")).await.expect("search");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].name.as_str(), found[0].holders.clone()),
        ("docs/a.txt", vec![holder.url.clone()])
    );
    let table = asked.peer_table().await.expect("the peer table");
    assert_eq!(table.iter().map(|p| p.url.as_str()).collect::<Vec<_>>(), [holder.url.as_str()]);
    assert_eq!(table[0].kind, "shoal", "it answered a shoal call");
    let own = at_holder.search(&Search::own_files("", "q-own".into())).await.expect("own files");
    assert_eq!(own.len(), 1);
    let locate = Locate {
        name: "docs/a.txt".into(),
        route: RouteParams::default(),
    };
    let hit = asked
        .locate(&locate, 1 << 20)
        .await
        .expect("locate")
        .expect("a hit that passes its checks");
    assert_eq!((hit.holder.as_str(), hit.id), (holder.url.as_str(), Some(found[0].id)));
    let query = Query {
        name: "docs/a.txt".into(),
        history: Vec::new(),
    };
    assert_eq!(at_holder.query(&query, 1 << 20).await.expect("query"), Some(b"hello".to_vec()));
    assert_eq!(
        at_holder.query(&query, 2).await.expect("query"),
        None,
        "content over the cap is not read"
    );

    let page = at_holder
        .list_folder(&ListFolder {
            folder: "docs".into(),
            cursor: String::new(),
        })
        .await
        .expect("a page");
    assert_eq!(page.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["docs/a.txt"]);
    assert_eq!(page.next, None);

    // The owner starts a download and follows it; anyone else sees it without its path.
    let call = Download {
        secret: SECRET.into(),
        targets: vec!["docs/a.txt".into()],
        ..Default::default()
    };
    let started = asked.download(&call).await.expect("a download starts");
    assert_eq!(started.name, "docs/a.txt");
    assert!(started.target.ends_with("/a.txt"), "{}", started.target);
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let rows = asked.downloads(Some(SECRET)).await.expect("downloads");
            if let Some(row) = rows.into_iter().find(|r| r.state == "done") {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the download ends in time");
    assert_eq!(
        (done.target.as_deref(), done.size, done.done),
        (Some(started.target.as_str()), 5, 5)
    );
    let public = asked.downloads(None).await.expect("the public view");
    assert_eq!((public.len(), public[0].target.as_deref()), (1, None));

    // Controls: a download that is not running cannot be paused; cancelling it is done.
    let control = |action| Control {
        action,
        secret: SECRET.into(),
        target: "docs/a.txt".into(),
    };
    let refused = asked.control(&control(Action::Pause)).await.expect_err("nothing runs");
    assert_eq!(refused.fault_code(), Some(NOT_FOUND), "{refused}");
    asked.control(&control(Action::Cancel)).await.expect("cancel");
}
