import XCTest
final class LigandNNTestsPlaceholder: XCTestCase { func testNothing() {} }
