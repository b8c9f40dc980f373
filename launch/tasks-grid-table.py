#!/usr/bin/env python3
"""The tasks-grid table of docs/neulig.md from a `ligand run` report.json whose NeuLig runs kept their baselines:
mean over the subsets of each K. Usage: python3 launch/tasks-grid-table.py out/tasks-k/report.json"""
import json,sys,collections
d=json.load(open(sys.argv[1]))
rows=collections.defaultdict(list)
for r in d['records']:
    key=(r['suite'],r['k'])
    rows[key].append(r)
print('| suite | K | subsets | NeuLig task | Portland ens. | gap (task − Portland) | NeuLig global | TIES | task arith. | averaging | pretrained | experts |')
print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
for (suite,k),rs in sorted(rows.items()):
    task=[r for r in rs if r['mode']=='task']; glob=[r for r in rs if r['mode']=='global']
    def m(xs): return sum(xs)/len(xs)*100
    b=lambda name: m([r['baselines'][name] for r in task])
    names=task[0]['baselines'].keys()
    pe=[n for n in names if n.startswith('Portland')][0]
    ta=[n for n in names if n.startswith('task arith')][0]
    ti=[n for n in names if n.startswith('TIES')][0]
    av=[n for n in names if n.startswith('weight av')][0]
    pr=[n for n in names if n.startswith('pretrained')][0]
    nt=m([r['accuracy'] for r in task]); ng=m([r['accuracy'] for r in glob])
    print(f"| {suite} | {k} | {len(task)} | {nt:.2f} | {b(pe):.2f} | {nt-b(pe):+.2f} | {ng:.2f} | {b(ti):.2f} | {b(ta):.2f} | {b(av):.2f} | {b(pr):.2f} | {m([r['bestSingle'] for r in task]):.2f} |")
