// Kafka's own Java producer (kafka-clients from the Maven distribution that
// scripts/kafka.sh fetches), driven by a JSON spec on stdin, for the records the
// console producer cannot write: 10^5 headers on one record, null header values
// beside binary ones, transactions that abort, timestamps at the extremes.
//
// Compiled at test time (tests/integration/faults/clients.py):
//   javac -cp 'libs/*' -d DIR FaultProducer.java && java -cp "DIR:libs/*" FaultProducer < spec.json
//
// Spec: {"bootstrap": "host:port", "jobs": [JOB, ...]}, each job one producer:
//   {"config": {"compression.type": "lz4", ...},        producer properties
//    "transaction": null | "commit" | "abort",          with "transactional.id" in config
//    "records": [{"topic": t, "partition": int|null, "key": b64|null, "value": b64|null,
//                 "timestamp": long|null, "headers": [[name, b64|null], ...],
//                 "flood": {"count": n, "name": prefix, "value": b64} | null}]}
// Output on stdout: one JSON line per record, in order:
//   {"job": j, "index": i, "partition": p, "offset": o}  or  {"job": j, "index": i, "error": "..."}
// Exit 0 when every job ran (a refused record is an output line, not a failure).

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class FaultProducer {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        JsonNode spec = JSON.readTree(System.in);
        String bootstrap = spec.get("bootstrap").asText();
        int j = 0;
        for (JsonNode job : spec.get("jobs")) {
            runJob(bootstrap, j++, job);
        }
    }

    private static void runJob(String bootstrap, int j, JsonNode job) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        props.put("linger.ms", "5");
        props.put("max.request.size", String.valueOf(4 * 1024 * 1024));
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        Iterator<Map.Entry<String, JsonNode>> config = job.path("config").fields();
        while (config.hasNext()) {
            Map.Entry<String, JsonNode> e = config.next();
            props.put(e.getKey(), e.getValue().asText());
        }
        String transaction = job.path("transaction").isTextual() ? job.get("transaction").asText() : null;
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        List<String> refused = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            if (transaction != null) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            for (JsonNode r : job.get("records")) {
                try {
                    sent.add(producer.send(record(r)));
                    refused.add(null);
                } catch (RuntimeException e) {  // refused by the client before sending
                    sent.add(null);
                    refused.add(e.toString());
                }
            }
            producer.flush();
            if ("abort".equals(transaction)) {
                producer.abortTransaction();
            } else if ("commit".equals(transaction)) {
                producer.commitTransaction();
            }
        }
        for (int i = 0; i < sent.size(); i++) {
            ObjectNode line = JSON.createObjectNode().put("job", j).put("index", i);
            if (sent.get(i) == null) {
                line.put("error", refused.get(i));
            } else {
                try {
                    RecordMetadata meta = sent.get(i).get();
                    line.put("partition", meta.partition()).put("offset", meta.offset());
                } catch (ExecutionException e) {
                    line.put("error", e.getCause().toString());
                }
            }
            System.out.println(JSON.writeValueAsString(line));
        }
    }

    private static ProducerRecord<byte[], byte[]> record(JsonNode r) {
        List<Header> headers = new ArrayList<>();
        for (JsonNode h : r.path("headers")) {
            headers.add(new RecordHeader(h.get(0).asText(), bytes(h.get(1))));
        }
        JsonNode flood = r.path("flood");
        if (flood.isObject()) {
            String name = flood.get("name").asText();
            byte[] value = bytes(flood.get("value"));
            for (int n = 0; n < flood.get("count").asInt(); n++) {
                headers.add(new RecordHeader(name + n, value));
            }
        }
        Integer partition = r.path("partition").isInt() ? r.get("partition").asInt() : null;
        Long timestamp = r.path("timestamp").isNumber() ? r.get("timestamp").asLong() : null;
        return new ProducerRecord<>(
            r.get("topic").asText(), partition, timestamp, bytes(r.get("key")), bytes(r.get("value")), headers);
    }

    private static byte[] bytes(JsonNode b64) {
        return b64 == null || b64.isNull() ? null : Base64.getDecoder().decode(b64.asText());
    }

    private FaultProducer() {}
}
