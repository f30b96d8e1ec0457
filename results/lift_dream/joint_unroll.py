"""Does carrying the arm's joints keep an unrolled state on track? Fits a residual MLP
dynamics offline (12-step windows, half teacher-forced) on the carried state with and without
the arm's joint angles (sin, cos) and velocities, then unrolls it open loop from each held-out
episode's reset under the recorded actions and reports the end effector's distance from the
real one after 10 / 20 / 40 steps. Run from the repository root (~3 min):

    python results/lift_dream/joint_unroll.py
"""
import glob, time, sys
import h5py, numpy as np, torch
torch.manual_seed(0); torch.set_num_threads(1)
def load(paths, joints):
    X, A = [], []
    for p in paths:
        with h5py.File(p) as f:
            for k in f["data"]:
                g = f["data"][k]; st = g["states"][:]
                parts = [g["obs/object_state"][:], g["obs/state"][:]]
                if joints: parts += [np.sin(st[:, 1:8]), np.cos(st[:, 1:8]), st[:, 17:24] * 0.1]
                X.append(np.concatenate(parts, 1).astype(np.float32)); A.append(g["actions"][:].astype(np.float32))
    return X, A
train_paths = [p for p in glob.glob("data/lift_state/*.hdf5") if "test_" not in p] + glob.glob("data/lift_roll/*_train.hdf5") + glob.glob("data/lift_dream/*.hdf5")
test = {"expert": ["data/lift_state/test_expert.hdf5"], "noise05": ["data/lift_state/test_noise05.hdf5"], "bc_noise03": ["data/lift_roll/n40_noise03_s100.hdf5", "data/lift_roll/n10_noise03_s100.hdf5"]}
W = 12
for joints in (False, True):
    X, A = load(train_paths, joints)
    allx = np.concatenate(X); mu, sd = allx.mean(0), allx.std(0) + 1e-6
    D = np.concatenate([x[1:] - x[:-1] for x in X]); dsd = D.std(0) + 1e-6
    adim = A[0].shape[1]; S = allx.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(2 * S + adim, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, S))
    mu_t, sd_t, dsd_t = map(torch.tensor, (mu, sd, dsd))
    def step(x, xprev, a):   # x, xprev env units [B,S]; a [B,A] (the action leading OUT of x)
        inp = torch.cat([(x - mu_t) / sd_t, (x - xprev) / dsd_t, a], -1)
        return x + net(inp) * dsd_t
    # windows of W+1 states for unrolled training
    wins = []
    for x, a in zip(X, A):
        for t0 in range(0, len(x) - W - 1, 4):
            wins.append((x[max(t0 - 1, 0):t0 + W + 1] if t0 > 0 else np.concatenate([x[:1], x[:W + 1]]), a[t0:t0 + W]))
    WX = torch.tensor(np.stack([w[0] for w in wins])); WA = torch.tensor(np.stack([w[1] for w in wins]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3); t0 = time.time()
    for it in range(3000):
        idx = torch.randint(0, len(WX), (256,)); wx, wa = WX[idx], WA[idx]
        prev, cur = wx[:, 0], wx[:, 1]; loss = 0
        for k in range(W):
            nxt = step(cur, prev, wa[:, k])
            loss = loss + (((nxt - wx[:, k + 2]) / dsd_t) ** 2).mean()
            # half teacher-forced, half free
            prev, cur = cur, nxt if k % 2 == 0 else wx[:, k + 2]
        opt.zero_grad(); loss.backward(); opt.step()
        if it == 2200:
            for g in opt.param_groups: g["lr"] = 3e-4
    out = [f"joints={joints} ({time.time()-t0:.0f}s)"]
    with torch.no_grad():
        for name, paths in test.items():
            x, a = load(paths, joints)
            errs = {10: [], 20: [], 40: []}
            for xe, ae in zip(x, a):
                xe_t, ae_t = torch.tensor(xe), torch.tensor(ae)
                prev, cur = xe_t[0:1], xe_t[0:1]
                for t in range(40):
                    prev, cur = cur, step(cur, prev, ae_t[t:t + 1])
                    if t + 1 in errs: errs[t + 1].append(float((cur[0, 3:6] - xe_t[t + 1, 3:6]).norm()) * 100)
            out.append(name + " " + "/".join(f"{np.mean(v):.2f}" for v in errs.values()) + " cm")
    print(" | ".join(out), flush=True)
