//! Catalog listings: the category filter and pagination edges.

use super::*;

// ---------------------------------------------------------------- filter and pages

async fn products_filter_by_category(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let a = id_of(&category(&app, &ann.access, "A").await);
    let bb = id_of(&category(&app, &ann.access, "B").await);
    let empty = id_of(&category(&app, &ann.access, "Empty").await);
    let mut in_a = Vec::new();
    for i in 0..3 {
        in_a.push(id_of(
            &product(&app, &ann.access, &format!("a{i}"), &a).await,
        ));
    }
    let mut in_b = Vec::new();
    for i in 0..2 {
        in_b.push(id_of(
            &product(&app, &ann.access, &format!("b{i}"), &bb).await,
        ));
    }
    in_a.sort();
    in_b.sort();

    for (cat, want) in [(&a, &in_a), (&bb, &in_b)] {
        let r = app
            .get(&format!("/products?category_id={cat}"), Some(&ann.access))
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], want.len());
        assert_eq!(r.body["limited"], false);
        for item in r.body["items"].as_array().unwrap() {
            assert_eq!(item["category_id"], cat.as_str());
        }
        let mut got = ids(&r);
        got.sort();
        assert_eq!(&got, want);

        // Anonymous callers can filter too (and still get summaries).
        let r = app.get(&format!("/products?category_id={cat}"), None).await;
        r.assert_status(200);
        assert_eq!(r.body["total"], want.len());
        assert_eq!(r.body["limited"], true);
        let mut got = ids(&r);
        got.sort();
        assert_eq!(&got, want);
    }

    // Filter with paging.
    let mut seen = Vec::new();
    for page in 1..=2 {
        let r = app
            .get(
                &format!("/products?category_id={a}&per_page=2&page={page}"),
                Some(&ann.access),
            )
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], 3);
        assert_eq!(r.body["per_page"], 2);
        seen.extend(ids(&r));
    }
    seen.sort();
    assert_eq!(seen, in_a);

    // An empty or unknown category: nothing, total 0.
    for cat in [empty, Uuid::now_v7().to_string()] {
        let r = app
            .get(&format!("/products?category_id={cat}"), Some(&ann.access))
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], 0);
        assert_eq!(r.body["items"], json!([]));
    }
    // Unfiltered: all five.
    assert_eq!(total(&app, "/products").await, 5);

    for q in ["not-a-uuid", "1", "%20"] {
        app.get(&format!("/products?category_id={q}"), Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
        app.get(&format!("/products?category_id={q}"), None)
            .await
            .assert_error(400, "BadRequest");
    }
}

async fn pagination_edges(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let mut categories = Vec::new();
    for i in 0..25 {
        categories.push(id_of(
            &category(&app, &ann.access, &format!("C{i:02}")).await,
        ));
    }
    let cid = categories[0].clone();
    let mut products = Vec::new();
    for i in 0..5 {
        products.push(id_of(
            &product(&app, &ann.access, &format!("P{i}"), &cid).await,
        ));
    }

    for (path, all, token) in [
        ("/categories", &categories, None),
        ("/categories", &categories, Some(ann.access.as_str())),
        ("/products", &products, None),
        ("/products", &products, Some(ann.access.as_str())),
    ] {
        let n = all.len();
        let sep = "?";
        // Defaults.
        let r = app.get(path, token).await;
        r.assert_status(200);
        assert_eq!(r.body["page"], 1);
        assert_eq!(r.body["per_page"], 20);
        assert_eq!(r.body["total"], n);
        assert_eq!(ids(&r).len(), n.min(20));

        // Walk the pages with per_page=2: disjoint, complete, stable.
        let mut seen = Vec::new();
        let pages = n.div_ceil(2);
        for page in 1..=pages {
            let r = app
                .get(&format!("{path}{sep}per_page=2&page={page}"), token)
                .await;
            r.assert_status(200);
            assert_eq!(r.body["page"], page);
            assert_eq!(r.body["per_page"], 2);
            assert_eq!(r.body["total"], n);
            seen.extend(ids(&r));
        }
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        sorted_seen.dedup();
        let mut want = all.clone();
        want.sort();
        assert_eq!(seen.len(), n, "{path}: pages overlap or miss items");
        assert_eq!(sorted_seen, want, "{path}");
        // The same order as one big page.
        let r = app.get(&format!("{path}{sep}per_page=100"), token).await;
        r.assert_status(200);
        assert_eq!(ids(&r), seen, "{path}: order not stable");

        // Past the end: empty with the right total.
        for q in [
            format!("page={}&per_page=2", pages + 1),
            "page=2".to_owned(),
            "page=999".to_owned(),
        ] {
            if q == "page=2" && n > 20 {
                continue;
            }
            let r = app.get(&format!("{path}{sep}{q}"), token).await;
            r.assert_status(200);
            assert_eq!(r.body["items"], json!([]), "{path}?{q}");
            assert_eq!(r.body["total"], n, "{path}?{q}");
        }

        // A huge page number is no crash: an empty page (or a 400), never a 500.
        for q in [
            "page=9223372036854775807",
            "page=9223372036854775807&per_page=100",
        ] {
            let r = app.get(&format!("{path}{sep}{q}"), token).await;
            if r.status == 200 {
                assert_eq!(r.body["items"], json!([]), "{path}?{q}");
                assert_eq!(r.body["total"], n, "{path}?{q}");
            } else {
                r.assert_error(400, "BadRequest");
            }
        }

        // Bad parameters: 400.
        for q in [
            "page=99999999999999999999",
            "per_page=0",
            "per_page=101",
            "per_page=-5",
            "per_page=x",
            "page=0",
            "page=-1",
            "page=x",
            "page=2.5",
        ] {
            app.get(&format!("{path}{sep}{q}"), token)
                .await
                .assert_error(400, "BadRequest");
        }
        // per_page 1 and 100 are fine.
        for q in ["per_page=1", "per_page=100"] {
            app.get(&format!("{path}{sep}{q}"), token)
                .await
                .assert_status(200);
        }
    }
    // Categories: page 2 of 20 holds the last five.
    let r = app.get("/categories?page=2", None).await;
    r.assert_status(200);
    assert_eq!(ids(&r).len(), 5);
    assert_eq!(r.body["total"], 25);
    // Authentication comes before parameters.
    app.get("/products?per_page=0", Some("garbage"))
        .await
        .assert_error(401, "TokenInvalid");
}

crate::both_backends!(products_filter_by_category, pagination_edges,);
