"""Do the arm's joint angles and velocities make its one-step response predictable? Fits the
same small MLP offline on the dynamics' own inputs, with the previous action and difference
("hist"), with the joints read from the recorded simulator states ("joint"), and with both,
and reports held-out one-step end-effector errors. Run from the repository root (~3 min):

    python results/lift_dream/joint_fit.py [base hist joint both]

The files are read raw: ``actions[t]`` is taken at ``obs[t]`` and leads to ``obs[t + 1]``;
``states[t]`` is MuJoCo's flattened state (time, qpos, qvel): the arm's 7 joint angles at
1..7 and velocities at 17..23.
"""
import glob, time, sys
import h5py, numpy as np, torch
torch.manual_seed(0); torch.set_num_threads(1)
def load(paths):
    S, A, Q = [], [], []
    for p in paths:
        with h5py.File(p) as f:
            for k in f["data"]:
                g = f["data"][k]
                s = np.concatenate([g["obs/object_state"][:], g["obs/state"][:]], 1)
                S.append(s.astype(np.float32)); A.append(g["actions"][:].astype(np.float32))
                st = g["states"][:]
                Q.append(np.concatenate([np.sin(st[:, 1:8]), np.cos(st[:, 1:8]), st[:, 17:24] * 0.1], 1).astype(np.float32))
    return S, A, Q
def features(S, A, Q, mode):
    X, Y = [], []
    for s, a, q in zip(S, A, Q):
        for t in range(2, len(s) - 1):
            x = [s[t], s[t] - s[t - 1], a[t]]
            if mode in ("hist", "both"): x += [s[t - 1] - s[t - 2], a[t - 1]]
            if mode in ("joint", "both"): x += [q[t]]
            X.append(np.concatenate(x)); Y.append(s[t + 1, 3:6] - s[t, 3:6])
    return np.array(X, np.float32), np.array(Y, np.float32)
train_paths = [p for p in glob.glob("data/lift_state/*.hdf5") if "test_" not in p] + glob.glob("data/lift_roll/*_train.hdf5") + glob.glob("data/lift_dream/*.hdf5")
test = {"expert": ["data/lift_state/test_expert.hdf5"], "noise05": ["data/lift_state/test_noise05.hdf5"], "miss04": ["data/lift_state/test_miss04.hdf5"], "bc_noise03": ["data/lift_roll/n40_noise03_s100.hdf5", "data/lift_roll/n10_noise03_s100.hdf5"]}
S, A, Q = load(train_paths); tests = {k: load(v) for k, v in test.items()}
for mode in sys.argv[1:] or ("base", "hist", "joint", "both"):
    X, Y = features(S, A, Q, mode)
    mu, sd = X.mean(0), X.std(0) + 1e-6; ysd = Y.std(0) + 1e-6
    Xt, Yt = torch.tensor((X - mu) / sd), torch.tensor(Y / ysd)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 3))
    opt = torch.optim.AdamW(net.parameters(), 1e-3); t0 = time.time()
    for step in range(4000):
        idx = torch.randint(0, len(Xt), (1024,))
        loss = ((net(Xt[idx]) - Yt[idx]) ** 2).mean(); opt.zero_grad(); loss.backward(); opt.step()
        if step == 3000:
            for g in opt.param_groups: g["lr"] = 3e-4
    out = [f"{mode} n={len(X)} ({time.time()-t0:.0f}s)"]
    with torch.no_grad():
        for k, (s, a, q) in tests.items():
            x, y = features(s, a, q, mode)
            p = net(torch.tensor((x - mu) / sd)).numpy() * ysd
            err = np.linalg.norm(p - y, axis=1) * 1000
            out.append(f"{k}: {err.mean():.2f} mm (step {np.linalg.norm(y, axis=1).mean()*1000:.1f})")
    print(" | ".join(out), flush=True)
