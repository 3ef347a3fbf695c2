import re,sys,subprocess
code=sys.argv[1]; depth=int(sys.argv[2]) if len(sys.argv)>2 else 1
out=subprocess.run([sys.executable,"-X","importtime","-c",code],capture_output=True,text=True).stderr
rows=[]
for line in out.splitlines():
    m=re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)",line)
    if not m: continue
    d=(len(m.group(3))-1)//2
    if d<depth: rows.append((int(m.group(2)),d,m.group(4)))
tot=0
for c,d,n in rows:
    print(f"{c/1000:8.1f} {'  '*d}{n}")
