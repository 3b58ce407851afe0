#[test]
fn smoke() {
    let b = broker::Broker::spawn(suites::config()).unwrap();
    b.store("a", suites::secret(b"hunter2")).unwrap();
    let v = b.with_secret("a", |p| p.to_vec()).unwrap();
    assert_eq!(v, b"hunter2");
    println!("{:?}", b.heap_status().unwrap());
    println!("{:?}", b.shutdown().unwrap());
}
