# Sourced by bench scripts: swtpm_start STATE_DIR LOG starts a software TPM on a free pair of
# loopback ports (server, control) and sets tpm_port and swtpm_pid; it returns once the TPM answers.
swtpm_start() {
  tpm_port=$(python3 -c 'import socket,random
while True:
    p=random.randint(20000,60000)
    try:
        a=socket.socket(); a.bind(("127.0.0.1",p)); b=socket.socket(); b.bind(("127.0.0.1",p+1)); a.close(); b.close(); print(p); break
    except OSError: pass')
  swtpm socket --tpm2 --tpmstate dir="$(realpath "$1")" --flags not-need-init,startup-clear \
    --server type=tcp,port="$tpm_port",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((tpm_port + 1)),bindaddr=127.0.0.1 >"$2" 2>&1 &
  swtpm_pid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$tpm_port") 2>/dev/null && break; sleep 0.05; done
}
