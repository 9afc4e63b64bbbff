import VouchBroker
import VouchHTTPClient

/// Webhook POSTs through libcurl (system trust store for HTTPS).
struct CurlWebhooks: WebhookTransport {
    let client = HTTPClient(.anyURL(caFile: nil), timeoutSeconds: 10)

    func post(url: String, headers: [String: String], body: [UInt8]) throws -> Int {
        try client.send("POST", url, headers: headers, body: body).status
    }
}
